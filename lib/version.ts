/** The version of this package; the platform packages carrying libobjstore have the same one. */
export const VERSION = "0.1.0";
