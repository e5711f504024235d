// Package gotool builds, for the tests that run them, the command-line tools the project pins with go.mod `tool`
// directives: in the main module (cosign v2, staticcheck) or in a nested module under tools/ (cosign v3, helm,
// notary-server, versitygw) whose pins would clash with the main module's. `go tool -n` builds a tool once,
// through the build cache, and prints its path; it never downloads a toolchain here (GOTOOLCHAIN=local).
package gotool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Path returns the path of tool, pinned by the module at dir (relative to the main module's root: "" for the main
// module, "tools/helm" for a nested one), building it on first use. ctx bounds the build: a cold one takes minutes.
func Path(ctx context.Context, dir, tool string) (string, error) {
	gomod, err := run(ctx, "", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("gotool: not inside a Go module")
	}
	moddir := filepath.Join(filepath.Dir(gomod), dir)
	args := []string{"tool", "-n", tool}
	modfile, err := patched(ctx, moddir)
	if err != nil {
		return "", fmt.Errorf("gotool: patching %s: %w", dir, err)
	}
	if modfile != "" {
		args = []string{"tool", "-modfile=" + modfile, "-n", tool}
	}
	path, err := run(ctx, moddir, args...)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("go tool -n %s printed %q: %w", tool, path, err)
	}
	return path, nil
}

// run runs the go command in dir with the caller's environment and GOTOOLCHAIN=local and returns its trimmed
// stdout; a failure carries the end of its stderr (a failed build can print pages).
func run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 15))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// lastLines returns at most n trailing lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
