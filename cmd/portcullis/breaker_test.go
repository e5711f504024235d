package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// An upstream's circuitBreaker from the config file opens after its failures, and the metrics and the log say so.
func TestUpstreamCircuitBreakerFromConfig(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close() // connections are refused from now on: every request fails

	logs := &cachetest.SyncBuilder{}
	a, _, _ := startApp(t, registrytest.New(t), logs, func(cfg *configs.Config) {
		u := configs.DefaultUpstreamFor(dead)
		u.URL, u.Retries = "http://"+dead, 0
		u.CircuitBreaker = configs.CircuitBreaker{Failures: 2, Cooldown: configs.Duration(time.Hour)}
		cfg.Upstreams = append(cfg.Upstreams, u)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	metric := func(name string) string {
		_, body := httpGet(t, "http://"+a.opsAddr.String()+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, fmt.Sprintf("%s{upstream=%q} ", name, dead)) {
				return strings.Fields(line)[1]
			}
		}
		return "absent"
	}
	if got := metric("portcullis_upstream_circuit_open"); got != "0" {
		t.Errorf("circuit_open before any request: %s, want 0", got)
	}
	for i := range 4 {
		if c, _ := get(t, a, fmt.Sprintf("/v2/app%d/manifests/v1?ns=%s", i, dead)); c/100 != 5 {
			t.Errorf("pull %d from a dead upstream: %d, want 5xx", i, c)
		}
	}
	if got := metric("portcullis_upstream_circuit_open"); got != "1" {
		t.Errorf("circuit_open after the failures: %s, want 1", got)
	}
	if got := metric("portcullis_upstream_circuit_opens_total"); got != "1" {
		t.Errorf("circuit_opens_total: %s, want 1", got)
	}
	if !strings.Contains(logs.String(), "upstream circuit breaker open") {
		t.Errorf("no log line says the breaker opened:\n%s", logs.String())
	}
}
