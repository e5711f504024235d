// Package depcheck holds the test that keeps the packages to their jobs: the edge does not decide, deciding does
// not serve HTTP, and nothing below the edge imports it. It has no code.
package depcheck
