package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary buildBinary built, after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaryPath != "" {
		_ = os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}
