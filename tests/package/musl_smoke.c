/*
 * The musl build of libobjstore.so under a real musl C library (Debian's musl-gcc): loaded with
 * dlopen as an FFI does, it creates a store (with its prefault thread), writes, seals and reads
 * back an object, and removes the store. scripts/test_package.sh builds and runs it.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "objstore.h"

#define LOOKUP(name) typeof(&name) p_##name = (typeof(&name))dlsym(lib, #name); \
  if (!p_##name) { printf("musl_smoke: %s missing\n", #name); return 1; }

int main(int argc, char **argv) {
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) { printf("musl_smoke: dlopen: %s\n", dlerror()); return 1; }
  LOOKUP(objstore_abi_version) LOOKUP(objstore_open) LOOKUP(objstore_result)
  LOOKUP(objstore_segment_base) LOOKUP(objstore_create) LOOKUP(objstore_seal)
  LOOKUP(objstore_get) LOOKUP(objstore_release) LOOKUP(objstore_ref_drop) LOOKUP(objstore_close)
  char name[64];
  int name_len = snprintf(name, sizeof name, "musl-smoke-%d", (int)getpid());
  objstore_t *h = p_objstore_open((const uint8_t *)name, name_len,
                                  OBJSTORE_OPEN_CREATE | OBJSTORE_OPEN_EXCLUSIVE | OBJSTORE_OPEN_PREFAULT,
                                  16 << 20, 0);
  if (!h) { printf("musl_smoke: objstore_open failed\n"); return 1; }
  double *out = p_objstore_result(h);
  uint8_t id[OBJSTORE_ID_SIZE] = {7};
  int failed = p_objstore_create(h, id, 5, id, 0) != 0;
  if (!failed) {
    memcpy(p_objstore_segment_base(h) + (size_t)out[0], "hello", 5);
    failed = p_objstore_seal(h, id) != 0 || p_objstore_get(h, id) != 0 ||
             memcmp(p_objstore_segment_base(h) + (size_t)out[0], "hello", 5) != 0;
    p_objstore_release(h, id);
    p_objstore_ref_drop(h, id);
  }
  if (p_objstore_close(h, OBJSTORE_CLOSE_REMOVE_IF_LAST) != 1) failed = 1; /* 1: removed, as the last process */
  printf("%s: ABI %u, put and read back 5 bytes under musl\n", failed ? "FAIL" : "ok", p_objstore_abi_version());
  return failed;
}
