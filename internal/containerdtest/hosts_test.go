package containerdtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostsTOML(t *testing.T) {
	tests := []struct {
		name     string
		upstream string
		mirror   string
		want     string
		wantErr  bool
	}{
		{
			name:     "plain http mirror",
			upstream: "registry.example.test",
			mirror:   "http://127.0.0.1:5000",
			want: `# Written by containerdtest: pull registry.example.test only through the mirror.
server = "http://127.0.0.1:5000"
capabilities = ["pull", "resolve"]

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
`,
		},
		{
			name:     "docker hub server and trailing slash",
			upstream: "docker.io",
			mirror:   "https://portcullis.example:8443/",
			want: `# Written by containerdtest: pull docker.io only through the mirror.
server = "https://portcullis.example:8443"
capabilities = ["pull", "resolve"]

[host."https://portcullis.example:8443"]
  capabilities = ["pull", "resolve"]
`,
		},
		{name: "no scheme", upstream: "ghcr.io", mirror: "127.0.0.1:5000", wantErr: true},
		{name: "query", upstream: "ghcr.io", mirror: "http://127.0.0.1:5000/?ns=x", wantErr: true},
		{name: "empty upstream", upstream: "", mirror: "http://127.0.0.1:5000", wantErr: true},
		{name: "upstream with path", upstream: "ghcr.io/acme", mirror: "http://127.0.0.1:5000", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostsTOML(tt.upstream, tt.mirror, "")
			if (err != nil) != tt.wantErr {
				t.Fatalf("hostsTOML() error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hostsTOML() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteHostsDir(t *testing.T) {
	dir := WriteHostsDir(t, "registry.example.test", "http://127.0.0.1:5000")
	got, err := os.ReadFile(filepath.Join(dir, "registry.example.test", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hostsTOML("registry.example.test", "http://127.0.0.1:5000", "")
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("hosts.toml mismatch (-want +got):\n%s", diff)
	}
}
