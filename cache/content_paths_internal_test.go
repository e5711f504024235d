package cache

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseObjectPaths(t *testing.T) {
	d := digest.FromString("x")
	enc := d.Encoded()
	for _, tc := range []struct {
		path        string
		blob, small bool
	}{
		{"/blobs/sha256/" + enc[:2] + "/" + enc + "/data", true, false},
		{"/small/sha256/" + enc[:2] + "/" + enc, false, true},
		{"/blobs/sha256/" + enc[:2] + "/" + enc, false, false},           // no data file
		{"/small/sha256/" + enc[:2] + "/" + enc + "/data", false, false}, // a small object has no directory
		{"/small/sha256/00/" + enc, false, false},                        // in the wrong directory
		{"/small/sha256/" + enc[:2] + "/" + enc[:10], false, false},      // not a digest
		{"/small/sha256/" + enc[:2] + "/.upload-0123", false, false},     // a temporary file
		{"/small/md5/" + enc[:2] + "/" + enc, false, false},              // not an algorithm
		{"/small/sha256", false, false},
	} {
		if got, ok := parseBlobPath(tc.path); ok != tc.blob || (ok && got != d) {
			t.Errorf("parseBlobPath(%q) = %s, %v; want ok %v", tc.path, got, ok, tc.blob)
		}
		if got, ok := parseSmallPath(tc.path); ok != tc.small || (ok && got != d) {
			t.Errorf("parseSmallPath(%q) = %s, %v; want ok %v", tc.path, got, ok, tc.small)
		}
	}
}
