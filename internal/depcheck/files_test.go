package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoLargeTrackedFiles keeps build output and other big files out of git (a 55 MB binary once slipped in).
func TestNoLargeTrackedFiles(t *testing.T) {
	const limit = 1 << 20
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git checkout")
	}
	dir := strings.TrimSpace(string(root))
	out, err := exec.Command("git", "-C", dir, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	n := 0
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			continue // deleted in the work tree
		}
		n++
		if fi.Size() > limit {
			t.Errorf("%s is %d bytes, over 1 MiB: build output and large data do not belong in git", f, fi.Size())
		}
	}
	if n < 50 {
		t.Fatalf("git ls-files listed only %d files", n)
	}
}
