/* Static English word lists for the synthetic long-context tasks (see
 * words.c). Lowercase ASCII letters only; the three lists are disjoint. */
#ifndef GODWIT_WORDS_H
#define GODWIT_WORDS_H
extern const char *const gw_adjectives[];
extern const int gw_n_adjectives;
extern const char *const gw_nouns[];
extern const int gw_n_nouns;
extern const char *const gw_verbs[];
extern const int gw_n_verbs;
#endif
