package rego

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name -> content under a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const mediumTests = `package portcullis.medium_test

import data.portcullis.medium

test_five_medium_denied if {
	medium.deny["5 medium findings, at most 3 allowed"] with input as {"scan": {"counts": {"medium": 5}}}
}

test_three_medium_admitted if {
	count(medium.deny) == 0 with input as {"scan": {"counts": {"medium": 3}}}
}
`

func TestTest(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name    string
		files   map[string]string
		opts    TestOptions
		want    TestSummary
		ok      bool
		out     []string // lines the report has
		wantErr string
	}{
		{
			name:  "passing",
			files: map[string]string{"medium.rego": mediumModule, "medium_test.rego": mediumTests, "README.md": "not rego"},
			want:  TestSummary{Passed: 2}, ok: true,
			out: []string{"PASS: 2/2"},
		},
		{
			name:  "verbose names each test",
			files: map[string]string{"medium.rego": mediumModule, "medium_test.rego": mediumTests},
			opts:  TestOptions{Verbose: true},
			want:  TestSummary{Passed: 2}, ok: true,
			out: []string{"data.portcullis.medium_test.test_five_medium_denied: PASS", "data.portcullis.medium_test.test_three_medium_admitted: PASS"},
		},
		{
			name:  "filtered",
			files: map[string]string{"medium.rego": mediumModule, "medium_test.rego": mediumTests},
			opts:  TestOptions{Run: "five"},
			want:  TestSummary{Passed: 1}, ok: true,
			out: []string{"PASS: 1/1"},
		},
		{
			name: "a failing test",
			files: map[string]string{"sub/medium.rego": mediumModule, "sub/medium_test.rego": mediumTests + `
test_wrong if {
	print("medium is", input.scan.counts.medium)
	count(medium.deny) == 0 with input as {"scan": {"counts": {"medium": 4}}}
}
`},
			want: TestSummary{Passed: 2, Failed: 1},
			out:  []string{"data.portcullis.medium_test.test_wrong: FAIL", "PASS: 2/3", "FAIL: 1/3"},
		},
		{
			name:    "a test that calls http.send does not compile",
			files:   map[string]string{"medium.rego": mediumModule, "medium_test.rego": mediumTests + "\ntest_net if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://x\"})\n}\n"},
			wantErr: "medium_test.rego:14: rego_type_error: http.send is not available",
		},
		{
			name:    "a module that does not parse",
			files:   map[string]string{"medium.rego": "package a\ndeny contains x if {"},
			wantErr: "medium.rego:2: rego_parse_error:",
		},
		{
			name:    "no tests",
			files:   map[string]string{"medium.rego": mediumModule},
			wantErr: "no tests (rules named test_*)",
		},
		{
			name:    "no files",
			files:   map[string]string{".hidden/medium.rego": mediumModule},
			wantErr: "no .rego files",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			var out bytes.Buffer
			got, err := e.Test(context.Background(), []string{dir}, &out, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if got != tt.want || got.OK() != tt.ok {
				t.Errorf("summary = %+v (OK %v), want %+v", got, got.OK(), tt.want)
			}
			for _, line := range tt.out {
				if !strings.Contains(out.String(), line) {
					t.Errorf("report lacks %q:\n%s", line, out.String())
				}
			}
		})
	}
}
