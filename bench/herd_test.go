package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchHerd: 200 clients ask at once for one cold 64 MiB blob. Portcullis should make exactly one upstream GET,
// start every follower within 50 ms of the first byte the leader got, and deliver at least 0.8x the aggregate
// throughput of the same 200 clients on the warm blob. The clients run in a process of their own (herd); the
// first bytes are timed where the server offers them to the connection (firstBytes) and where the clients read
// them.
func benchHerd(t *testing.T, rep *report) {
	l := newLab(t, false)
	const repo, size, clients = "bench/herd", 64 << 20, 200
	const row = "herd: 200 clients, one 64 MiB blob"
	for i, sys := range []string{sysPortcullis, sysDistribution} {
		d := l.up.PushBlob(t, repo, size, uint64(1000+i))
		url := l.urls[sys] + "/v2/" + repo + "/blobs/" + d.String()
		path := "/v2/" + repo + "/blobs/" + d.String()
		before := l.up.Hits().CountPath(http.MethodGet, path)
		l.firstBytes.arm()
		coldTook, clientSpread, err := herd(url, clients, size)
		served, spread := l.firstBytes.disarm()
		longest := l.firstBytes.longestWait()
		if err != nil {
			t.Fatalf("%s cold herd: %v", sys, err)
		}
		if served != clients {
			t.Fatalf("%s cold herd: %d responses recorded a first byte, want %d", sys, served, clients)
		}
		gets := l.up.Hits().CountPath(http.MethodGet, path) - before
		waitStored(t, l, sys, d)
		warmTook, _, err := herd(url, clients, size)
		if err != nil {
			t.Fatalf("%s warm herd: %v", sys, err)
		}
		cold := float64(clients) * size / coldTook.Seconds() / 1e9
		warm := float64(clients) * size / warmTook.Seconds() / 1e9
		rep.add(row, sys, "upstream GETs", float64(gets), true)
		rep.add(row, sys, "cold GB/s", cold, false)
		rep.add(row, sys, "warm GB/s", warm, false)
		rep.add(row, sys, "last first byte sent after leader's, ms", ms(spread), true)
		rep.add(row, sys, "last first byte read by a client after leader's, ms", ms(clientSpread), true)
		rep.add(row, sys, "longest from a request to its first byte sent, ms", ms(longest), true)
		if sys == sysPortcullis {
			rep.check("4. herd: upstream GETs", "exactly 1", fmt.Sprint(gets), gets == 1)
			rep.check("4. herd: followers' first byte after the leader's (sent)", "<= 50 ms", fmt.Sprintf("%.1f ms (read by the lab's clients: %.1f ms)", ms(spread), ms(clientSpread)), spread <= 50*time.Millisecond)
			rep.check("4. herd: cold aggregate throughput / warm", ">= 0.8", fmt.Sprintf("%.2f (%.2f / %.2f GB/s)", cold/warm, cold, warm), cold >= 0.8*warm)
		}
	}
}

// herdClientEnv, when set in the environment of the test binary, makes it the herd's clients instead of running the
// tests: its value is a herdSpec in JSON, and it prints a herdResult in JSON. The clients run in a process of their
// own, as a fleet's nodes do: 200 client goroutines in the proxy's process would take its scheduler and its two
// cores, and a follower's first byte would wait for them.
const herdClientEnv = "PORTCULLIS_BENCH_HERD_CLIENTS"

type herdSpec struct {
	URL     string
	Clients int
	Size    int64
}

type herdResult struct {
	Took, Spread time.Duration // all clients' time; the last client's first byte after the first client's
	Err          string
}

// TestMain runs the tests, or the herd's clients when herdClientEnv says so, or an upstream when upstreamProcEnv
// does.
func TestMain(m *testing.M) {
	if dir := os.Getenv(upstreamProcEnv); dir != "" {
		if err := serveUpstream(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(herdClientEnv); spec != "" {
		var s herdSpec
		res := herdResult{}
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			res.Err = err.Error()
		} else if res.Took, res.Spread, err = herdOnce(newClient(), s.URL, s.Clients, s.Size); err != nil {
			res.Err = err.Error()
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// herd runs n clients of url in a process of their own (herdClientEnv).
func herd(url string, n int, size int64) (took, spread time.Duration, err error) {
	spec, _ := json.Marshal(herdSpec{URL: url, Clients: n, Size: size})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), herdClientEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("herd clients: %w", err)
	}
	var res herdResult
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, 0, fmt.Errorf("herd clients said %q: %w", out, err)
	}
	if res.Err != "" {
		return res.Took, res.Spread, errors.New(res.Err)
	}
	return res.Took, res.Spread, nil
}

// herdOnce has n clients GET url at once, each over a connection it opened before, and returns the time they all
// took and how long after the first client's first body byte the last client got its own.
func herdOnce(client *http.Client, url string, n int, size int64) (time.Duration, time.Duration, error) {
	base := url[:strings.Index(url, "/v2/")+len("/v2/")]
	if _, err := together(n, func(int) error { _, err := get(client, http.MethodGet, base, ""); return err }); err != nil {
		return 0, 0, err
	}
	var mu sync.Mutex
	firsts := make([]time.Time, 0, n)
	took, err := together(n, func(int) error {
		resp, err := client.Get(url)
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
		got, err := io.Copy(io.Discard, resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || got+1 != size) {
			err = fmt.Errorf("%s: %d bytes", resp.Status, got+1)
		}
		return err
	})
	if err != nil {
		return took, 0, err
	}
	return took, spanOf(firsts), nil
}
