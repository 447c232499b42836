/* Error messages: functions that can fail take (char *err, size_t errlen)
 * and write one line naming the problem; err may be NULL. */
#ifndef GODWIT_ERROR_H
#define GODWIT_ERROR_H
#include <stddef.h>

void gw_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
