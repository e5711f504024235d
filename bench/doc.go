// Package bench is the performance harness behind `make bench`: Portcullis next to a direct pull from the
// upstream and next to CNCF Distribution in proxy mode, over the same real in-process upstream, with the same
// client. It writes a table with ratios to stdout and the numbers to bench/results.json.
//
// The harness is TestBench in this package; it runs only when PORTCULLIS_BENCH=1 (make bench sets it), so
// `make test` compiles and vets it but does not spend minutes on it. It starts what it measures itself: the
// upstream, Distribution, Portcullis in process and as a subprocess (for its resident set), a redis-server
// (cache/cachetest) and versitygw, an S3 server on a directory (tools/versitygw). The test binary also runs as
// two helpers of its own: the herd's clients (herdClientEnv) and, for the CPU per decision, the upstream in a
// process apart from Portcullis's (upstreamProcEnv).
package bench
