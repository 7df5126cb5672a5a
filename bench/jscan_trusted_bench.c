/* jscan_trusted_bench: the trusted scan alone, as the replay runs it. Reads JSON records,
 * one a line (`sluice export` prints a log's), and scans each with jscan_scan_trusted
 * and the paths the replay's decoder asks for (evfields.c and the process stage's two
 * extra ones), ROUNDS times. Prints the record count and a checksum of every span and
 * number found, so two builds can be compared for the same results; bench/jscan_trusted.sh
 * counts its instructions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

static const char *const paths[] = {
    "type", "event", "userId", "anonymousId", "previousId", "timestamp", "receivedAt",
    "properties.revenue", "properties.total", "context.page.url", "context.page.path",
    "context.campaign.source", "context.campaign.medium", "context.campaign.name",
    "context.referrer.class", "context.location.country", "context.device.type",
    "context.browser.name", "properties.sessionId", "context.sessionId",
    "context.consent.marketing", "properties.product_id", "properties.sku",
    "properties.campaign", "properties.cost"};
#define NP (sizeof paths / sizeof paths[0])

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: jscan_trusted_bench RECORDS_FILE [ROUNDS]\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) return 1;
  int rounds = argc > 2 ? atoi(argv[2]) : 1;
  size_t n = 0, cap = 0;
  char **recs = NULL;
  size_t *lens = NULL;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    if (line[len - 1] == '\n') len--;
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      recs = realloc(recs, cap * sizeof *recs);
      lens = realloc(lens, cap * sizeof *lens);
    }
    recs[n] = malloc((size_t)len); /* exactly the record: as the log reader hands it */
    memcpy(recs[n], line, (size_t)len);
    lens[n++] = (size_t)len;
  }
  fclose(f);
  jscan_paths_t *ps = jscan_compile(paths, NP);
  jscan_val_t out[NP];
  unsigned long long sum = 0;
  for (int r = 0; r < rounds; r++)
    for (size_t i = 0; i < n; i++) {
      if (jscan_scan_trusted(ps, recs[i], lens[i], out)) sum += 1000003;
      for (size_t k = 0; k < NP; k++)
        sum = sum * 31 + out[k].type * 7 + out[k].n + (unsigned long long)out[k].escaped +
              (out[k].p ? (unsigned long long)(out[k].p - recs[i]) * 13 : 0) +
              (unsigned long long)(out[k].num * 1000);
    }
  printf("%zu records, checksum %llu\n", n, sum);
  jscan_paths_free(ps);
  for (size_t i = 0; i < n; i++) free(recs[i]);
  free(recs);
  free(lens);
  free(line);
  return 0;
}
