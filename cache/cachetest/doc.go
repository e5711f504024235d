// Package cachetest holds the conformance suites every implementation of a cache store interface passes (RunKV,
// RunCollections, RunJournal, RunBus, with restarts, concurrency and backend outages), and the helpers to run
// them against a real redis-server: plain, TLS with certificates made for the test, ACL users, persistence, a
// one-node cluster and a sentinel, any of which a test can kill, freeze and bring back. It is for tests only: it
// imports testing and starts processes.
package cachetest
