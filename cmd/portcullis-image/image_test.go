package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/portcullis/portcullis/internal/containerdtest"
)

// imageEnv names an archive `make image` built; the run test then checks that one instead of building its own.
const imageEnv = "PORTCULLIS_IMAGE"

var built struct {
	sync.Once
	dir, binary, archive string
	err                  error
}

// buildForTest builds the static binary the way `make image` does (same flags, so the build cache is shared)
// and the image archive from it, once per test binary.
func buildForTest(t *testing.T) (binary, archive string) {
	t.Helper()
	built.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "portcullis-image-test-")
		if built.err != nil {
			return
		}
		built.binary = filepath.Join(built.dir, "portcullis")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=dev", "-o", built.binary, "../portcullis")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		img, err := buildImage(buildOptions{binary: built.binary, arch: runtime.GOARCH, version: "dev", source: "https://github.com/portcullis/portcullis", created: time.Unix(0, 0).UTC()})
		if err != nil {
			built.err = err
			return
		}
		built.archive = filepath.Join(built.dir, "portcullis-image.tar")
		built.err = writeArchive(img, "portcullis:dev", built.archive)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.binary, built.archive
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestImageContents: the archive is an OCI layout whose one image runs the static binary as 65532, carries the
// version and source labels, and is the same bytes for the same inputs.
func TestImageContents(t *testing.T) {
	binary, archive := buildForTest(t)
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["io.containerd.image.name"] != "portcullis:dev" {
		t.Fatalf("index: %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || c.Entrypoint[0] != binaryPath || cf.OS != "linux" || cf.Architecture != runtime.GOARCH ||
		c.Labels["org.opencontainers.image.version"] != "dev" || c.Labels["org.opencontainers.image.source"] != "https://github.com/portcullis/portcullis" {
		t.Errorf("config: %+v %s/%s", c, cf.OS, cf.Architecture)
	}
	mt, _ := img.MediaType()
	if mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s", mt)
	}
	again, err := buildImage(buildOptions{binary: binary, arch: runtime.GOARCH, version: "dev", source: "https://github.com/portcullis/portcullis", created: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same inputs, digests %s and %s", d1, d2)
	}
}

func TestImageRefusesDynamicBinary(t *testing.T) {
	tests := []struct {
		name, binary, arch, want string
	}{
		{"not an executable", "image_test.go", runtime.GOARCH, "not a Linux executable"},
		{"another architecture", "", map[string]string{"amd64": "arm64"}[runtime.GOARCH] + "x", "built for"},
	}
	sh, err := exec.LookPath("sh") // a dynamically linked system binary
	if err == nil {
		tests = append(tests, struct{ name, binary, arch, want string }{"dynamic", sh, runtime.GOARCH, "dynamically linked"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.binary
			if bin == "" {
				bin = sh
			}
			_, err := buildImage(buildOptions{binary: bin, arch: tc.arch, created: time.Unix(0, 0)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// TestImageRunsUnderContainerd: the image `make image` writes (or, without it, one built the same way) imports
// into a real containerd, runs with `ctr run` on a read-only root file system, as uid 65532, and answers /healthz.
func TestImageRunsUnderContainerd(t *testing.T) {
	archive := os.Getenv(imageEnv)
	if archive == "" {
		_, archive = buildForTest(t)
	}
	d := containerdtest.Start(t, containerdtest.WithTasks())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := d.Ctr(ctx, "images", "import", "--snapshotter", d.Snapshotter(), archive); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	if _, err := d.ImageDigest(ctx, "portcullis:dev"); err != nil {
		out, _ := d.Ctr(ctx, "images", "ls")
		t.Fatalf("no portcullis:dev after import: %v\n%s", err, out)
	}
	ops := freePort(t)
	id := "portcullis-image-test"
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		_, _ = d.Ctr(cctx, "tasks", "kill", "--signal", "SIGKILL", id)
		for i := 0; i < 50; i++ {
			if _, err := d.Ctr(cctx, "tasks", "delete", id); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = d.Ctr(cctx, "containers", "delete", id)
	})
	// As the chart runs it: read-only root, a writable volume for the data directory.
	logFile := filepath.Join(t.TempDir(), "container.log")
	data := t.TempDir() // like the chart's emptyDir with fsGroup: writable by the image's user
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	out, err := d.Ctr(ctx, "run", "--detach", "--net-host", "--read-only", "--snapshotter", d.Snapshotter(), "--log-uri", "file://"+logFile,
		"--mount", "type=bind,src="+data+",dst="+dataDir+",options=rbind:rw",
		"portcullis:dev", id,
		binaryPath, "serve", "--listen", "127.0.0.1:"+freePort(t), "--ops-listen", "127.0.0.1:"+ops, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + ops + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
		}
		if time.Now().After(deadline) {
			tasks, _ := d.Ctr(ctx, "tasks", "ls")
			logs, _ := os.ReadFile(logFile)
			t.Fatalf("no /healthz from the container: %v\n%s\ncontainer output:\n%s", err, tasks, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q", body)
	}
	ps, err := d.Ctr(ctx, "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	pid := ""
	for _, line := range strings.Split(ps, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
			pid = f[1]
		}
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatalf("task %s: %v\n%s", id, err, ps)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Uid:") || strings.HasPrefix(line, "Gid:") {
			if f := strings.Fields(line); len(f) < 3 || f[1] != "65532" || f[2] != "65532" {
				t.Errorf("the container runs with %s, want 65532", line)
			}
		}
	}
	if !bytes.Contains(status, []byte("Uid:\t65532")) {
		t.Errorf("no Uid line for 65532:\n%s", status)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestImagePush: --push (make image REGISTRY=...) writes the same image to a registry.
func TestImagePush(t *testing.T) {
	binary, _ := buildForTest(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/platform/portcullis:v1.2.3"
	var out, errb bytes.Buffer
	if code := run([]string{"--binary", binary, "--version", "v1.2.3", "--out", "", "--push", ref}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	img, err := crane.Pull(ref, crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("pushed config: %+v", cf.Config)
	}
	d, _ := img.Digest()
	if !strings.Contains(out.String(), d.String()) {
		t.Errorf("output %q does not name the digest %s", out.String(), d)
	}
}
