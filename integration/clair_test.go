package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/clairtest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/clair"
)

const clairPolicy = `scanners:
  clair: {kind: clair, url: %q, timeout: 30s}
rules:
  - name: clair
    match: {repository: "clair/**"}
    scan:
      maxSeverity: high
      ignoreUnfixed: true
      sources: [scanner]
      onMissing: scan-and-wait
      scanner: clair
      waitTimeout: 30s
`

// clairEnv is Portcullis with a Clair stand-in as the rule's scanner, and Clair's notifier webhook served as
// `portcullis serve` serves it (POST /clair/{scanner}/notify, storing each fresh report as the scanner's).
type clairEnv struct {
	*env
	clair   *clairtest.Server
	webhook *httptest.Server
}

func newClairEnv(t *testing.T, findings func(digest.Digest) []clairtest.Vulnerability) *clairEnv {
	t.Helper()
	ce := &clairEnv{clair: clairtest.New(t, findings)}
	client, err := clair.New(ce.clair.URL(), clair.WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var reports *admission.Reports
	ce.env = newEnv(t, withPolicy(fmt.Sprintf(clairPolicy, ce.clair.URL()), nil,
		// Decisions are cached for an hour: only the webhook can make the next pull decide again.
		admission.WithDecisionTTL(time.Hour, time.Hour)),
		func(c *envConfig) {
			c.scanning = func(kv cache.KV, proxyURL, defaultUpstream string) *admission.Scanning {
				reports = admission.NewReports(kv, 0)
				return &admission.Scanning{Reports: reports, Credentials: admission.NewScanCredentials(kv),
					Scanners: map[string]admission.ScannerEndpoint{"clair": {Scanner: client, PullURL: proxyURL}}, DefaultUpstream: defaultUpstream}
			}
		})
	store := func(ctx context.Context, d digest.Digest, r *policy.ScanReport) error {
		return reports.Put(ctx, policy.SourceScanner, d, r)
	}
	ce.webhook = httptest.NewServer(client.NotificationHandler(store, testLogger(t)))
	t.Cleanup(ce.webhook.Close)
	return ce
}

// TestClairScanAndWait checks that Portcullis has Clair index an image whose layers Clair pulls through
// Portcullis with the scanner credential, and that a critical CVE with a fix in Clair's report denies.
func TestClairScanAndWait(t *testing.T) {
	ce := newClairEnv(t, func(d digest.Digest) []clairtest.Vulnerability {
		return []clairtest.Vulnerability{{Name: "CVE-2024-9003", Package: "bash", Version: "5.1", Severity: "Low"}}
	})
	dirty := ce.up.PushRandomImage(t, "clair/dirty:v1", 2, 2048)
	dirtyDigest, _ := dirty.Digest()
	ce.up.PushRandomImage(t, "clair/clean:v1", 2, 2048)
	ce.clair.Add(digest.Digest(dirtyDigest.String()), clairtest.Vulnerability{Name: "CVE-2024-9001", Package: "openssl", Version: "3.0.1", FixedIn: "3.0.15", Severity: "Critical"})
	ce.clair.Add(digest.Digest(dirtyDigest.String()), clairtest.Vulnerability{Name: "CVE-2024-9010", Package: "glibc", Version: "2.36", Severity: "Critical"}) // no fix: ignored

	if _, err := crane.Pull(ce.ref("clair/clean:v1"), pullOpts()...); err != nil {
		t.Fatalf("clean image: %v", err)
	}
	msg := denial(t, ce.env, "/v2/clair/dirty/manifests/v1")
	mustContain(t, "denial", msg, "1 critical", "CVE-2024-9001 openssl")
	if strings.Contains(msg, "CVE-2024-9010") {
		t.Errorf("an unfixed finding counted despite ignoreUnfixed: %s", msg)
	}

	pulls := ce.clair.Pulls()
	if len(pulls) != 4 {
		t.Fatalf("Clair fetched %d layers, want 4 (2 per image): %+v", len(pulls), pulls)
	}
	for _, p := range pulls {
		if p.Err != "" || !strings.HasPrefix(p.URI, ce.srv.URL+"/v2/clair/") || !strings.HasPrefix(p.Authorization, "Bearer pcs_") {
			t.Errorf("layer fetch %+v: want a pull through Portcullis (%s) with a scanner credential", p, ce.srv.URL)
		}
	}
	// Without the credential the same layer URI is refused: Clair read it as the scanner.
	resp, err := http.Get(pulls[0].URI)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.Contains(pulls[0].URI, "/dirty/") {
		t.Errorf("a denied image's layer was served without the scanner credential")
	}
}

// TestClairNotificationRedecides checks that Clair's notifier webhook, naming an admitted image that a new
// critical CVE affects, makes Portcullis refuse it within a second, although its admission is cached for an hour.
func TestClairNotificationRedecides(t *testing.T) {
	ce := newClairEnv(t, nil)
	img := ce.up.PushRandomImage(t, "clair/app:v1", 1, 2048)
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	if _, err := crane.Pull(ce.ref("clair/app:v1"), pullOpts()...); err != nil {
		t.Fatalf("before the notification: %v", err)
	}

	id := ce.clair.Add(d, clairtest.Vulnerability{Name: "CVE-2026-0001", Package: "openssl", Version: "3.0.1", FixedIn: "3.0.16", Severity: "Critical"})
	// Still admitted from the cache: nothing told Portcullis yet.
	if _, err := crane.Pull(ce.ref("clair/app:v1"), pullOpts()...); err != nil {
		t.Fatalf("before the webhook: %v", err)
	}
	delivered := time.Now()
	status, err := ce.clair.Deliver(context.Background(), ce.webhook.URL, id)
	if err != nil || status/100 != 2 {
		t.Fatalf("webhook: %d %v", status, err)
	}
	// The webhook answers once the fresh report is stored: the very next pull is refused (no timing assert;
	// the time is logged, well under a second on an idle machine).
	msg := denial(t, ce.env, "/v2/clair/app/manifests/v1")
	mustContain(t, "denial", msg, "CVE-2026-0001 openssl")
	t.Logf("denied %s after the webhook was delivered", time.Since(delivered))
	if !ce.clair.Deleted(id) {
		t.Errorf("notification %s was not deleted after it was handled", id)
	}
}
