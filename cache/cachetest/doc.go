// Package cachetest is the conformance suite every cache.KV implementation passes, and the helpers to run
// it against a real Redis. It is for tests only: it imports testing and starts processes.
package cachetest
