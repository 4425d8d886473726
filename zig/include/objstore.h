/*
 * libobjstore — a shared-memory object store (the C ABI).
 *
 * Any process on a machine opens a store by name; objects are created, written, sealed,
 * read (pinned), released and deleted by calling into the shared structures directly, with
 * no daemon. Object ids are OBJSTORE_ID_SIZE bytes. Sizes cross the ABI as doubles (exact up
 * to 2^53) and everything else as 32-bit values, so calls stay on the fast path of Deno's,
 * Bun's and koffi's FFI.
 *
 * Every call that can fail returns an objstore_status (0 = OK); objstore_last_error() gives
 * the message and detail of the last failure on this thread. A handle is used by one thread
 * at a time.
 *
 * Out-values land in a per-handle array of 8 doubles (objstore_result): [0] offset of the
 * object's data from the segment base, [1] its size, [2] a count or cursor, [3] bytes.
 *
 *   objstore_t *h = objstore_open("demo", 4, OBJSTORE_OPEN_CREATE, 1 << 30, 0);
 *   double *out = objstore_result(h);
 *   uint8_t id[OBJSTORE_ID_SIZE] = {1};
 *   objstore_create(h, id, 5, id, 0);
 *   memcpy((uint8_t *)objstore_segment_base(h) + (size_t)out[0], "hello", 5);
 *   objstore_seal(h, id);
 *   objstore_get(h, id);     // pinned: the bytes stay put until objstore_release
 *   objstore_release(h, id);
 *   objstore_ref_drop(h, id); // the creator's reference; the object is deleted
 *   objstore_close(h, OBJSTORE_CLOSE_REMOVE_IF_LAST);
 */
#ifndef OBJSTORE_H
#define OBJSTORE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OBJSTORE_ABI_VERSION 10
#define OBJSTORE_ID_SIZE 28

typedef struct objstore objstore_t;

typedef enum objstore_status {
  OBJSTORE_OK = 0,
  OBJSTORE_INVALID_ARGUMENT = 1,
  OBJSTORE_EXISTS = 2,            /* an object with this id exists */
  OBJSTORE_ABSENT = 3,            /* no such object */
  OBJSTORE_NOT_SEALED = 4,        /* still being written; see objstore_wait_sealed */
  OBJSTORE_SPILLED = 5,           /* on disk; objstore_restore, then get again */
  OBJSTORE_STORE_FULL = 6,
  OBJSTORE_INDEX_FULL = 7,
  OBJSTORE_TIMEOUT = 8,
  OBJSTORE_CLIENTS_FULL = 9,      /* 64 processes are attached */
  OBJSTORE_STORE_NOT_FOUND = 10,
  OBJSTORE_STORE_EXISTS = 11,
  OBJSTORE_BAD_STORE = 12,        /* not a store, or damaged */
  OBJSTORE_ABI_MISMATCH = 13,
  OBJSTORE_SYSTEM = 14,
  OBJSTORE_CORRUPT = 15,          /* spilled data failed its CRC32C */
  OBJSTORE_SPILL_DISABLED = 16,
  OBJSTORE_BUSY = 17,
  OBJSTORE_PERMISSION_DENIED = 18,
  OBJSTORE_NO_SPACE = 19,         /* the spill device is full */
  OBJSTORE_SPILL_MISSING = 20,    /* the spill file is gone */
  OBJSTORE_CLUSTER_AUTH = 21,     /* a node refused the cluster token */
  OBJSTORE_UNAVAILABLE = 22,      /* no node holding the object could send it */
  OBJSTORE_STATUS_MAX_VALUE = 0x7fffffff
} objstore_status;

/* The ABI this library implements; callers compare it with OBJSTORE_ABI_VERSION. */
uint32_t objstore_abi_version(void);

/* The status of the last call on this thread, and its message with detail. */
int32_t objstore_last_status(void);
uint32_t objstore_last_error(uint8_t *buffer, uint32_t buffer_size_bytes);
uint32_t objstore_status_message(int32_t status, uint8_t *buffer, uint32_t buffer_size_bytes);

#define OBJSTORE_OPEN_CREATE 1u    /* create the store if it does not exist */
#define OBJSTORE_OPEN_EXCLUSIVE 2u /* with CREATE: fail if it exists */
#define OBJSTORE_OPEN_PREFAULT 4u  /* fault the arena in from a background thread */

/* Opens (and with CREATE makes) /dev/shm/objstore-<name>, mode 0600. Names are 1..200 bytes of
 * letters, digits, '-', '_' and '.', not starting with '.' or "ch-" (the channels' prefix).
 * capacity_bytes and slot_count apply on create; slot_count is the most objects the store holds
 * at once (64 to 2^28; 0 = one per KiB of capacity, at least 262,144 or one per 64-byte block).
 * Sizes everywhere are whole numbers from 0 to 2^53; anything else (NaN, negative, fractional)
 * is OBJSTORE_INVALID_ARGUMENT.
 * Returns NULL on failure (see objstore_last_status). result[2] is 1 if this call created
 * the store, 0 if it attached to an existing one. A handle still open when the process calls
 * exit() or quick_exit() is closed then with OBJSTORE_CLOSE_REMOVE_IF_LAST; from the first
 * open on, SIGINT, SIGTERM and SIGHUP, while their action ends the process, fork a reaper that
 * does the same once the process is dead (zig/src/exits.zig). The library stays loaded. */
objstore_t *objstore_open(const uint8_t *name, uint32_t name_size_bytes, uint32_t flags,
                          double capacity_bytes, uint32_t slot_count);

#define OBJSTORE_CLOSE_REMOVE_IF_LAST 1u /* the last process removes the store + spill files */
#define OBJSTORE_CLOSE_UNMAP 2u          /* unmap; else map zero pages over the segment so
                                            stale views read zeros instead of faulting */
/* Drops this process's references and pins, aborts its unsealed objects, detaches.
 * Returns 1 if the store was removed. */
int32_t objstore_close(objstore_t *h, uint32_t flags);

/* Removes a store none of whose processes is alive; refuses (OBJSTORE_BUSY) one in use,
 * judged from its client table without attaching to it. */
int32_t objstore_destroy(const uint8_t *name, uint32_t name_size_bytes);

double *objstore_result(objstore_t *h);
uint8_t *objstore_segment_base(objstore_t *h);
double objstore_segment_size(objstore_t *h);
/* Offset in the segment of a uint32 bumped on every seal, abort and delete. */
uint32_t objstore_seal_sequence_offset(void);

/* Where bytes lies within its memory page (address mod 4096): a caller copying a large buffer
 * into the store places the copy at the same offset within a page, because glibc's memcpy
 * runs 3x slower when the destination is a little ahead of the source within a page. */
uint32_t objstore_page_offset(const void *bytes);

/* Creates an unsealed object whose data (result[0], result[1]) the caller writes; the
 * children (child_count ids, back to back) stay alive until this object is deleted. The
 * caller holds one reference. */
int32_t objstore_create(objstore_t *h, const uint8_t *id, double size_bytes,
                        const uint8_t *children, uint32_t child_count);
int32_t objstore_seal(objstore_t *h, const uint8_t *id);
int32_t objstore_abort(objstore_t *h, const uint8_t *id);

/* Pins a sealed object: result[0] offset, result[1] size. Pair with objstore_release. */
int32_t objstore_get(objstore_t *h, const uint8_t *id);
int32_t objstore_release(objstore_t *h, const uint8_t *id);

/* References, counted per process; the object is deleted when no process references or
 * pins it and no other object contains it. */
int32_t objstore_ref_add(objstore_t *h, const uint8_t *id);
int32_t objstore_ref_drop(objstore_t *h, const uint8_t *id);

/* result[1] = the object's data size, in memory or spilled. */
int32_t objstore_size(objstore_t *h, const uint8_t *id);
/* 0 absent, 1 being written, 2 sealed in memory, 3 spilled. */
int32_t objstore_contains(objstore_t *h, const uint8_t *id);
/* Blocks until the object is sealed (a futex shared by every process of the store). */
int32_t objstore_wait_sealed(objstore_t *h, const uint8_t *id, uint32_t timeout_ms);
/* Reclaims the references, pins and unsealed objects of processes that died; returns how
 * many processes were reclaimed. Call it now and then (the TypeScript library does, 4×/s). */
int32_t objstore_maintain(objstore_t *h);

/* Writes the pid of each living attached process into out at its client index (64 entries,
 * 0 where none is; a dead one not reclaimed yet is 0 too); returns how many are alive. Bit c
 * of a list record's ref_holders and pin_holders is client index c. */
int32_t objstore_clients(objstore_t *h, uint32_t *out);

/* out[11]: capacity, used, pinned, objects, spilled bytes, spilled objects, restored bytes,
 * attached processes; then totals since the store was made: bytes spilled, objects spilled,
 * objects restored (restored bytes is a total too). Spilled means left memory for a spill
 * file (written to one, or evicted with its copy already there). */
int32_t objstore_stats(objstore_t *h, double *out);

typedef struct objstore_list_record {
  uint8_t id[OBJSTORE_ID_SIZE];
  uint32_t state;       /* 1 being written, 2 in memory, 3 spilled */
  uint64_t ref_holders; /* bit c: client c (objstore_clients' index) holds a reference */
  uint64_t pin_holders; /* bit c: client c holds a pin */
  double size_bytes;
  uint32_t nested;      /* objects containing this one */
  uint32_t child_count;
} objstore_list_record; /* 64 bytes */

/* Lists up to record_capacity objects from slot `cursor` on; returns the count written and
 * sets result[2] to the next cursor (0 when done). With head_size_bytes > 0, heads gets
 * head_size_bytes per record: the first bytes of the object's value (its header and leading
 * tag: what kind of value it is) if it is sealed in memory, else zeros. They are read without
 * a pin and kept only if the object did not move or change state meanwhile; heads may be NULL
 * when head_size_bytes is 0. */
int32_t objstore_list(objstore_t *h, uint32_t cursor, uint8_t *out, uint32_t record_capacity,
                      uint8_t *heads, uint32_t head_size_bytes);

/* Spilling. The directory is shared by every process of the store; "" disables spilling.
 * It must be absolute, without NUL, under 960 bytes; it is made 0700 if absent, and spill
 * files in it are 0600. */
int32_t objstore_spill_configure(objstore_t *h, const uint8_t *dir, uint32_t dir_size_bytes);
/* Spills least recently used unpinned objects until target_bytes are freed:
 * result[2] objects, result[3] bytes. On a full disk, objects that still have a spill copy are
 * evicted anyway; OBJSTORE_NO_SPACE (its detail naming the directory, the bytes needed and
 * free) only if that frees too little. */
int32_t objstore_spill(objstore_t *h, double target_bytes);
int32_t objstore_spill_object(objstore_t *h, const uint8_t *id);
/* Restores a spilled object (one process restores, concurrent callers wait). */
int32_t objstore_restore(objstore_t *h, const uint8_t *id);
/* Restores a spilled object from its record's region (header, data, padding), fetched from the
 * remote copy of its spill file; checked like a local file (OBJSTORE_CORRUPT if bad). */
int32_t objstore_restore_region(objstore_t *h, const uint8_t *id, const uint8_t *region, double region_size_bytes);
/* Starts a thread in this process that spills least recently used objects whenever use
 * passes threshold_fraction of capacity (down to 0.1 below it); stopped by objstore_close. */
int32_t objstore_spill_background(objstore_t *h, double threshold_fraction);
/* 1 io_uring, 2 pwritev (forced with OBJSTORE_IO=pwritev). */
int32_t objstore_io_backend(objstore_t *h);

/* Driver <-> worker channels: two single-producer single-consumer byte rings in
 * /dev/shm/<name> (0600), ring 0 driver -> worker, ring 1 worker -> driver. `side` is the
 * caller's: 0 driver, 1 worker. Send and receive return the byte count times 4 plus flags:
 * OBJSTORE_CHANNEL_WAKE_PEER (ring the other process's doorbell: it was parked, or blocked
 * on a full ring that now has room) and OBJSTORE_CHANNEL_BLOCKED (send only: not all fit;
 * the receiver will ring this side's doorbell when it makes room). size_bytes and
 * capacity_bytes are at most 2^28; errors come back negated (-OBJSTORE_INVALID_ARGUMENT). */
#define OBJSTORE_CHANNEL_WAKE_PEER 1
#define OBJSTORE_CHANNEL_BLOCKED 2
typedef struct objstore_channel objstore_channel_t;
/* Names are "objstore-ch-" and then letters, digits, '-', '_' or '.' (255 bytes at most): the
 * channel calls reach no other file. capacity_bytes: per ring, a power of two in 4096..2^28.
 * Fails if the name exists. */
objstore_channel_t *objstore_channel_create(const uint8_t *name, uint32_t name_size_bytes, uint32_t capacity_bytes);
objstore_channel_t *objstore_channel_open(const uint8_t *name, uint32_t name_size_bytes);
/* Removes the name (mappings stay); a missing name is not an error. */
int32_t objstore_channel_unlink(const uint8_t *name, uint32_t name_size_bytes);
int32_t objstore_channel_close(objstore_channel_t *c);
int32_t objstore_channel_send(objstore_channel_t *c, uint32_t side, const uint8_t *bytes, uint32_t size_bytes);
/* Spins up to spin_us for data if the inbound ring is empty. */
int32_t objstore_channel_receive(objstore_channel_t *c, uint32_t side, uint8_t *out, uint32_t capacity_bytes, uint32_t spin_us);
/* Stops watching the inbound ring: 1 parked (senders will report WAKE_PEER), 0 if data waits,
 * negative on error. */
int32_t objstore_channel_park(objstore_channel_t *c, uint32_t side);
/* Watches the inbound ring again (before a spinning receive): senders need not wake it. */
int32_t objstore_channel_listen(objstore_channel_t *c, uint32_t side);
/* Writes the doorbell byte 0x01 to fd now (a full pipe drops it: its reader reads soon, and
 * looks at the channel on any read). */
int32_t objstore_doorbell_ring(int32_t fd);

/* Ends this process soon after parent_pid (its parent now) dies, even while its JavaScript is
 * busy: grace_ms later SIGTERM, as long again later SIGKILL. For worker processes; once per
 * process (later calls change nothing). */
int32_t objstore_watch_parent(int32_t parent_pid, uint32_t grace_ms);

/* Transfers between nodes. An endpoint is a store attachment of the transfer threads' own;
 * a server sends its sealed objects (restoring spilled ones) to nodes that present the
 * cluster token (a mutual HMAC-SHA256 challenge); a pull fetches one object into it, in
 * CRC32C-checked chunks over several connections, on a thread of its own. */
typedef struct objstore_endpoint objstore_endpoint_t;
typedef struct objstore_server objstore_server_t;
typedef struct objstore_pull objstore_pull_t;
objstore_endpoint_t *objstore_endpoint_open(const uint8_t *name, uint32_t name_size_bytes);
/* After its servers are stopped and its pulls finished. */
int32_t objstore_endpoint_close(objstore_endpoint_t *e);
/* Gives up the endpoint's reference on a pulled object (take your own first). */
int32_t objstore_endpoint_hand_over(objstore_endpoint_t *e, const uint8_t *id);
/* ip in host order (0: every address); port 0: a free one, see objstore_serve_port. The
 * token is 1 to 1024 bytes. */
objstore_server_t *objstore_serve(objstore_endpoint_t *e, uint32_t ip, uint32_t port, const uint8_t *token, uint32_t token_size_bytes);
uint32_t objstore_serve_port(objstore_server_t *s);
int32_t objstore_serve_stop(objstore_server_t *s);
/* sources: source_count records of 6 bytes (IPv4 address, port; big-endian), tried in order.
 * The object is in the store as being written from the start; sealed once every chunk is
 * checked, or removed. */
objstore_pull_t *objstore_pull_start(objstore_endpoint_t *e, const uint8_t *id, const uint8_t *sources, uint32_t source_count,
                                     const uint8_t *token, uint32_t token_size_bytes, uint32_t connection_count, uint32_t wait_ms);
/* 1 once the pull has ended. */
uint32_t objstore_pull_done(objstore_pull_t *p);
/* Joins and frees the pull: OK (out[1] = size), ABSENT, NOT_SEALED, EXISTS (being pulled or
 * present here already: wait for its seal), STORE_FULL (out[1] = the size to make room for;
 * evicting secondary copies was not enough), CORRUPT, CLUSTER_AUTH, UNAVAILABLE. */
int32_t objstore_pull_finish(objstore_pull_t *p, double *out);

#ifdef __cplusplus
}
#endif

#endif /* OBJSTORE_H */
