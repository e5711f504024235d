package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
)

// loopFor is how long each closed-loop measurement runs per system.
const loopFor = 3 * time.Second

// benchRows: the table rows, each on every system that can serve it.
func benchRows(t *testing.T, rep *report) {
	l := newLab(t, true)
	const repo = "bench/app"
	img := l.pushImage(t, repo, "v1", 1024, true)
	mt, _ := img.MediaType()
	accept := string(mt)
	systems := []string{sysDirect, sysDistribution, sysPortcullis, sysGated}
	manifest := func(sys string) string { return l.urls[sys] + "/v2/" + repo + "/manifests/v1" }
	for _, sys := range systems { // warm every cache
		if _, err := get(l.client, http.MethodGet, manifest(sys), accept); err != nil {
			t.Fatalf("%s: %v", sys, err)
		}
	}

	const headRow = "manifest by tag, HEAD, 32 clients, warm"
	for _, sys := range systems {
		lat, took, err := closedLoop(32, loopFor, func() error {
			_, err := get(l.client, http.MethodHead, manifest(sys), accept)
			return err
		})
		if err != nil {
			t.Fatalf("%s %s: %v", headRow, sys, err)
		}
		rep.add(headRow, sys, "req/s", float64(len(lat))/took.Seconds(), false)
	}

	const getRow = "manifest by tag, GET, 1 client, warm"
	for _, sys := range systems {
		lat, _, err := closedLoop(1, loopFor, func() error {
			_, err := get(l.client, http.MethodGet, manifest(sys), accept)
			return err
		})
		if err != nil {
			t.Fatalf("%s %s: %v", getRow, sys, err)
		}
		p50, p99 := percentile(lat, 50), percentile(lat, 99)
		rep.add(getRow, sys, "p50 us", us(p50), true)
		rep.add(getRow, sys, "p99 us", us(p99), true)
		if sys == sysGated {
			rep.check("3. warm manifest GET, 1 client, gate on: p50", "<= 100 us", fmt.Sprintf("%.0f us", us(p50)), p50 <= 100*time.Microsecond)
			rep.check("3. warm manifest GET, 1 client, gate on: p99", "<= 1 ms", fmt.Sprintf("%.0f us", us(p99)), p99 <= time.Millisecond)
		}
	}

	blobRows(t, l, rep)
	firstPullRows(t, l, rep)
	coldAdmissionRow(t, l, rep, img.RawManifest, accept)
}

// blobRows: a 64 MiB blob warm at 4 clients, and cold at 1 client (a fresh blob each time). Bare blobs, so the
// gated Portcullis (whose blob gate wants an admitted manifest) sits these out; its blob path differs from the
// ungated one only by a KV lookup.
func blobRows(t *testing.T, l *lab, rep *report) {
	const repo, size = "bench/blob", 64 << 20
	systems := []string{sysDirect, sysDistribution, sysPortcullis}
	warm := l.up.PushBlob(t, repo, size, 1)
	blob := func(sys string, d digest.Digest) string { return l.urls[sys] + "/v2/" + repo + "/blobs/" + d.String() }
	const warmRow = "64 MiB blob, 4 clients, warm"
	for _, sys := range systems {
		if _, err := get(l.client, http.MethodGet, blob(sys, warm), ""); err != nil {
			t.Fatalf("%s: %v", sys, err)
		}
		waitStored(t, l, sys, warm)
		lat, took, err := closedLoop(4, loopFor, func() error {
			_, err := get(l.client, http.MethodGet, blob(sys, warm), "")
			return err
		})
		if err != nil {
			t.Fatalf("%s %s: %v", warmRow, sys, err)
		}
		rep.add(warmRow, sys, "GB/s", float64(len(lat))*size/took.Seconds()/1e9, false)
	}

	const coldRow, samples = "64 MiB blob, 1 client, cold", 3
	seed := uint64(100)
	for _, sys := range systems {
		var total time.Duration
		for range samples {
			seed++
			d := l.up.PushBlob(t, repo, size, seed)
			start := time.Now()
			if _, err := get(l.client, http.MethodGet, blob(sys, d), ""); err != nil {
				t.Fatalf("%s %s: %v", coldRow, sys, err)
			}
			total += time.Since(start)
		}
		rep.add(coldRow, sys, "ms per blob", ms(total/samples), true)
	}
}

// waitStored waits until a Portcullis's content store holds d (the commit runs after the last byte).
func waitStored(t *testing.T, l *lab, sys string, d digest.Digest) {
	t.Helper()
	c, ok := l.content[sys]
	if !ok {
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := c.Stat(context.Background(), d); err == nil {
			return
		}
	}
	t.Fatalf("%s: %s not in the content store after 30s", sys, d)
}

// firstPullRows: the first GET by tag of an image nobody pulled before, gate off and gate on (a fresh signed image
// per sample, so the gate verifies its signature each time).
func firstPullRows(t *testing.T, l *lab, rep *report) {
	const row, samples = "first pull of a new image's manifest, by tag", 5
	for _, sys := range systemOrder {
		var lat []time.Duration
		for i := range samples {
			repo := fmt.Sprintf("bench/new-%d-%d", len(lat)+100*slices.Index(systemOrder, sys), i)
			img := l.pushImage(t, repo, "v1", 1024, sys == sysGated)
			mt, _ := img.MediaType()
			start := time.Now()
			if _, err := get(l.client, http.MethodGet, l.urls[sys]+"/v2/"+repo+"/manifests/v1", string(mt)); err != nil {
				t.Fatalf("%s %s: %v", row, sys, err)
			}
			lat = append(lat, time.Since(start))
		}
		rep.add(row, sys, "p50 ms", ms(percentile(lat, 50)), true)
	}
}

// coldAdmissionRow: what deciding costs, called as a pull calls it (Gate.Admit with the manifest the proxy
// verified) on a gate that remembers nothing, so every call gathers the signatures from the upstream and
// evaluates: the cold admission path, whatever its implementation.
func coldAdmissionRow(t *testing.T, l *lab, rep *report, raw func() ([]byte, error), mediaType string) {
	const row, samples = "cold admission (Gate.Admit, nothing cached)", 20
	const repo = "bench/app"
	body, err := raw()
	if err != nil {
		t.Fatal(err)
	}
	s := admission.Subject{Upstream: l.up.Host(), Repository: repo, Tag: "v1", Digest: digest.FromBytes(body), MediaType: mediaType, Manifest: body}
	client := l.upstreamClient(t)
	cold := newGate(t, l.policyDoc, l.policyFiles, map[string]admission.Endpoint{l.up.Host(): client}, forgetful{})
	ctx := context.Background()
	var lat []time.Duration
	for range samples {
		start := time.Now()
		v, err := cold.Admit(ctx, s)
		if err != nil || !v.Allowed || v.Evaluation == nil {
			t.Fatalf("cold admit: %+v %v", v, err)
		}
		lat = append(lat, time.Since(start))
	}
	rep.add(row, sysGated, "p50 ms", ms(percentile(lat, 50)), true)
	// The cold fetch every proxied pull pays anyway, for scale.
	lat = lat[:0]
	for range samples {
		start := time.Now()
		if _, _, _, err := client.Manifest(ctx, repo, s.Digest.String(), nil); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	rep.add(row, sysDirect, "p50 ms", ms(percentile(lat, 50)), true)
}

// forgetful is a KV that keeps nothing: every Admit on a gate over it evaluates afresh.
type forgetful struct{}

func (forgetful) Get(context.Context, string) ([]byte, error) { return nil, cache.ErrNotFound }
func (forgetful) Set(context.Context, string, []byte, time.Duration) error {
	return nil
}
func (forgetful) Delete(context.Context, string) error { return nil }
func (forgetful) Close() error                         { return nil }
