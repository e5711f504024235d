package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/s3test"
	"github.com/portcullis/portcullis/proxy"
)

// benchS3: Portcullis with its content store on S3 (versitygw on a local directory). A cold 1 GiB blob through
// it takes at most 1.2x the direct pull (the client's last byte waits for the digest, not the upload to S3), and a
// client arriving while the upload runs is served from the spool, without another upstream fetch.
func benchS3(t *testing.T, rep *report) {
	s3, err := s3test.Start(t)
	if err != nil {
		rep.note("S3 rows not measured: %v", err)
		t.Skip(err)
	}
	l := newLab(t, false)
	driver, err := cache.NewDriver("s3", s3.DriverParameters(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	p, err := proxy.New([]*proxy.Upstream{{Name: l.up.Host(), Registry: l.upstreamClient(t)}}, "", content, kv,
		proxy.WithLogger(slog.New(slog.DiscardHandler)), proxy.WithSpoolDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)

	const repo, size = "bench/s3", 1 << 30
	d := l.up.PushBlob(t, repo, size, 3)
	path := "/v2/" + repo + "/blobs/" + d.String()
	// pull times one pull and the CPU this process spent on it: the upstream, the client and any proxy all run in
	// it, so the CPU over the machine's cores is the least wall time the pull could take here.
	pull := func(base string) (wall, cpu time.Duration) {
		start, cpu0 := time.Now(), cpuTime()
		if _, err := get(l.client, http.MethodGet, base+path, ""); err != nil {
			t.Fatal(err)
		}
		return time.Since(start), cpuTime() - cpu0
	}
	direct, directCPU := pull(l.urls[sysDirect])
	floor, floorCPU := pull(hashingPassThrough(t, l.client, l.urls[sysDirect]))
	before := l.up.Hits().CountPath(http.MethodGet, path)
	cold, coldCPU := pull(srv.URL)
	ctx := context.Background()
	_, statErr := content.Stat(ctx, d) // still uploading, as a rule: a second client now reads the spool
	start := time.Now()
	if _, err := get(l.client, http.MethodGet, srv.URL+path, ""); err != nil {
		t.Fatal(err)
	}
	during := time.Since(start)
	gets := l.up.Hits().CountPath(http.MethodGet, path) - before
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := content.Stat(ctx, d); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blob was not in S3 five minutes after it was served")
		}
	}
	stored := time.Since(start) + during
	start = time.Now()
	if _, err := get(l.client, http.MethodGet, srv.URL+path, ""); err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)

	const row = "1 GiB blob, 1 client, content store on S3 (versitygw)"
	rep.add(row, sysDirect, "s, cold", direct.Seconds(), true)
	rep.add(row, sysDirect, "s, cold, through a bare hashing pass-through (no spool, no store)", floor.Seconds(), true)
	rep.add(row, sysPortcullis, "s, cold", cold.Seconds(), true)
	cores := float64(runtime.NumCPU())
	rep.add(row, sysDirect, "CPU s of the pull (upstream and client)", directCPU.Seconds(), true)
	rep.add(row, sysDirect, "CPU s of the pull through the bare hashing pass-through", floorCPU.Seconds(), true)
	rep.add(row, sysPortcullis, "CPU s of the cold pull (upstream, client and Portcullis)", coldCPU.Seconds(), true)
	rep.add(row, sysPortcullis, "s, arriving during the S3 upload", during.Seconds(), true)
	rep.add(row, sysPortcullis, "s, warm (read from S3)", warm.Seconds(), true)
	rep.check("5. cold 1 GiB through Portcullis on S3 / direct", "<= 1.2",
		fmt.Sprintf("%.2f (%.2f s / %.2f s; a bare hashing pass-through: %.2f s, %.2fx direct; CPU s direct %.2f, "+
			"pass-through %.2f, Portcullis %.2f: on %d cores the pass-through cannot take under %.2fx direct)",
			cold.Seconds()/direct.Seconds(), cold.Seconds(), direct.Seconds(), floor.Seconds(), floor.Seconds()/direct.Seconds(),
			directCPU.Seconds(), floorCPU.Seconds(), coldCPU.Seconds(), int(cores), floorCPU.Seconds()/cores/direct.Seconds()),
		cold <= direct*12/10)
	uploading := statErr != nil
	rep.check("5. a client arriving during the S3 upload is served from the spool", "upstream GETs 1, upload still running",
		fmt.Sprintf("upstream GETs %d; upload running when it arrived: %v; in S3 %.1f s after the first client's last byte", gets, uploading, stored.Seconds()),
		gets == 1 && uploading)
}

// hashingPassThrough serves GETs by reading them from upstream and copying the body to the client through SHA-256,
// checking the digest at the end: the least a proxy that does not trust its upstream must do for a cold blob (no
// spool, no store, no second client). Its time is the floor the cold rows of this machine can reach.
func hashingPassThrough(t *testing.T, client *http.Client, upstream string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := digest.Parse(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := client.Get(upstream + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
		h := d.Algorithm().Hash()
		if _, err := io.Copy(w, io.TeeReader(resp.Body, h)); err != nil || digest.NewDigest(d.Algorithm(), h) != d {
			panic(http.ErrAbortHandler) // the client sees a cut connection, not a whole body
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
