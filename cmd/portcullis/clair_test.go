package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/clairtest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestClairWebhookRoute runs serve's wiring with a kind: clair scanner: a pull has Clair (the stand-in) index the
// image through the registry listener, and Clair's notifier webhook on the ops listener, for a critical CVE that
// lands afterwards, makes the next pull of the admitted image refused. A name that is not a Clair scanner is 404.
func TestClairWebhookRoute(t *testing.T) {
	up := registrytest.New(t)
	cl := clairtest.New(t, nil)
	// Clair pulls from the registry listener, whose port the policy must name: pick a free one first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	doc := fmt.Sprintf("scanners:\n  clair: {kind: clair, url: %q, pullURL: %q, timeout: 30s}\n"+
		"default:\n  scan: {maxSeverity: high, sources: [scanner], onMissing: scan-and-wait, scanner: clair, waitTimeout: 30s}\n", cl.URL(), "http://"+listen)
	if err := os.WriteFile(pol, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _, _ := startApp(t, up, io.Discard, func(cfg *configs.Config) { cfg.Policy, cfg.Listen = pol, listen })
	img := up.PushRandomImage(t, "team/app:v1", 1, 512)
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	manifestURL := "http://" + a.addr.String() + "/v2/team/app/manifests/v1"

	if code, body := httpGet(t, manifestURL); code != http.StatusOK {
		t.Fatalf("before: %d %s", code, body)
	}
	if !cl.Indexed(d) || len(cl.Pulls()) == 0 || !strings.HasPrefix(cl.Pulls()[0].URI, "http://"+a.addr.String()+"/") {
		t.Fatalf("Clair did not index the image through Portcullis: %+v", cl.Pulls())
	}
	id := cl.Add(d, clairtest.Vulnerability{Name: "CVE-2026-0002", Package: "openssl", Version: "3.0.1", FixedIn: "3.0.16", Severity: "Critical"})
	ops := "http://" + a.opsAddr.String()
	if code, err := cl.Deliver(context.Background(), ops+"/clair/nope/notify", id); err != nil || code != http.StatusNotFound {
		t.Errorf("webhook for an unknown scanner: %d %v, want 404", code, err)
	}
	if code, err := cl.Deliver(context.Background(), ops+"/clair/clair/notify", id); err != nil || code != http.StatusNoContent {
		t.Fatalf("webhook: %d %v, want 204", code, err)
	}
	code, body := httpGet(t, manifestURL)
	if code != http.StatusForbidden || !strings.Contains(body, "CVE-2026-0002") {
		t.Errorf("after the webhook: %d %s, want 403 naming CVE-2026-0002", code, body)
	}
}
