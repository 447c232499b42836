/* Reading a whole small file (JSON configs and indexes) with a size bound. */
#ifndef GODWIT_FILE_H
#define GODWIT_FILE_H
#include <stddef.h>

/* Reads path into a malloc'd NUL-terminated buffer (*len = its size). A file
 * larger than max bytes, a read error or out of memory gives NULL with a
 * message in err that starts with "who: " (the calling module's name). */
char *gw_read_small_file(const char *who, const char *path, size_t max, size_t *len, char *err, size_t errlen);
#endif
