package bench

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// benchHerd: 200 clients ask at once for one cold 64 MiB blob. Portcullis should make exactly one upstream GET,
// start every follower within 50 ms of the first byte the leader got, and deliver at least 0.8x the aggregate
// throughput of the same 200 clients on the warm blob.
func benchHerd(t *testing.T, rep *report) {
	l := newLab(t, false)
	const repo, size, clients = "bench/herd", 64 << 20, 200
	const row = "herd: 200 clients, one 64 MiB blob"
	for i, sys := range []string{sysPortcullis, sysDistribution} {
		d := l.up.PushBlob(t, repo, size, uint64(1000+i))
		url := l.urls[sys] + "/v2/" + repo + "/blobs/" + d.String()
		path := "/v2/" + repo + "/blobs/" + d.String()
		// Open the clients' connections first, so the herd measures the proxy, not 200 TCP handshakes.
		if _, err := together(clients, func(int) error { _, err := get(l.client, http.MethodGet, l.urls[sys]+"/v2/", ""); return err }); err != nil {
			t.Fatal(err)
		}
		before := l.up.Hits().CountPath(http.MethodGet, path)
		var mu sync.Mutex
		firsts := make([]time.Time, 0, clients)
		coldTook, err := together(clients, func(int) error {
			resp, err := l.client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var b [1]byte
			if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
				return err
			}
			mu.Lock()
			firsts = append(firsts, time.Now())
			mu.Unlock()
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && (resp.StatusCode != http.StatusOK || n+1 != size) {
				err = fmt.Errorf("%s: %d bytes", resp.Status, n+1)
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s cold herd: %v", sys, err)
		}
		gets := l.up.Hits().CountPath(http.MethodGet, path) - before
		waitStored(t, l, sys, d)
		warmTook, err := together(clients, func(int) error { _, err := get(l.client, http.MethodGet, url, ""); return err })
		if err != nil {
			t.Fatalf("%s warm herd: %v", sys, err)
		}
		leader, last := firsts[0], firsts[0]
		for _, f := range firsts {
			if f.Before(leader) {
				leader = f
			}
			if f.After(last) {
				last = f
			}
		}
		spread := last.Sub(leader)
		cold := float64(clients) * size / coldTook.Seconds() / 1e9
		warm := float64(clients) * size / warmTook.Seconds() / 1e9
		rep.add(row, sys, "upstream GETs", float64(gets), true)
		rep.add(row, sys, "cold GB/s", cold, false)
		rep.add(row, sys, "warm GB/s", warm, false)
		rep.add(row, sys, "last first byte after leader's, ms", ms(spread), true)
		if sys == sysPortcullis {
			rep.check("4. herd: upstream GETs", "exactly 1", fmt.Sprint(gets), gets == 1)
			rep.check("4. herd: followers' first byte after the leader's", "<= 50 ms", fmt.Sprintf("%.1f ms", ms(spread)), spread <= 50*time.Millisecond)
			rep.check("4. herd: cold aggregate throughput / warm", ">= 0.8", fmt.Sprintf("%.2f (%.2f / %.2f GB/s)", cold/warm, cold, warm), cold >= 0.8*warm)
		}
	}
}
