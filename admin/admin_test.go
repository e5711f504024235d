package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// The image the report fixtures are about, and its config digest (Trivy's image id).
const (
	fixtureImage  = digest.Digest("sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f")
	fixtureConfig = digest.Digest("sha256:b58d4b43f876994215aaa685b3b2771d54645f7abeb2fee9d7f0b98adb38b95c")
)

var adminNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type adminEnv struct {
	admin   *API
	reports *admission.Reports
	log     *bytes.Buffer
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	var buf bytes.Buffer
	reports := admission.NewReports(kv, 0)
	a, err := New(StaticToken("secret"), WithReports(reports), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return adminNow }
	return &adminEnv{admin: a, reports: reports, log: &buf}
}

// post sends body and returns the status and the response body.
func (e *adminEnv) post(t *testing.T, path string, body []byte) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret")
	rec := httptest.NewRecorder()
	e.admin.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../verifier/report/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAdminReportBinding(t *testing.T) {
	trivyAt := func(created time.Time) []byte {
		return []byte(fmt.Sprintf(`{"SchemaVersion":2,"CreatedAt":%q,"ArtifactName":"app@%s","Results":[]}`, created.Format(time.RFC3339), fixtureImage))
	}
	other := digest.FromString("another image")
	tests := []struct {
		name   string
		dgst   digest.Digest
		body   []byte
		status int
		msg    []string
	}{
		{name: "trivy json about this image", dgst: fixtureImage, body: fixture(t, "trivy-image.json"), status: http.StatusCreated},
		{name: "trivy sarif about this image", dgst: fixtureImage, body: fixture(t, "trivy-image.sarif.json"), status: http.StatusCreated},
		{name: "cyclonedx about this image", dgst: fixtureImage, body: fixture(t, "trivy-image.cdx.json"), status: http.StatusCreated},
		{name: "a report naming no image is taken at its word", dgst: other, body: fixture(t, "grype-image.sarif.json"), status: http.StatusCreated},
		{
			name: "trivy json about another image", dgst: other, body: fixture(t, "trivy-image.json"), status: http.StatusBadRequest,
			msg: []string{"DIGEST_MISMATCH", fixtureImage.String(), other.String()},
		},
		{
			name: "sarif about another image", dgst: other, body: fixture(t, "trivy-image.sarif.json"), status: http.StatusBadRequest,
			msg: []string{"DIGEST_MISMATCH", fixtureImage.String(), other.String()},
		},
		{
			name: "cyclonedx about another image", dgst: other, body: fixture(t, "grype-vex.cdx.json"), status: http.StatusBadRequest,
			msg: []string{"DIGEST_MISMATCH", fixtureImage.String(), other.String()},
		},
		{
			name: "the image id is the config, not the image", dgst: fixtureConfig, body: fixture(t, "trivy-image.sarif.json"), status: http.StatusBadRequest,
			msg: []string{"DIGEST_MISMATCH"},
		},
		{name: "scanned within the clock skew", dgst: fixtureImage, body: trivyAt(adminNow.Add(4 * time.Minute)), status: http.StatusCreated},
		{
			name: "scanned in the future", dgst: fixtureImage, body: trivyAt(adminNow.Add(time.Hour)), status: http.StatusBadRequest,
			msg: []string{"REPORT_INVALID", "2026-06-01T13:00:00Z", "future"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAdminEnv(t)
			status, body := e.post(t, "/admin/v1/reports/"+tt.dgst.String(), tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			for _, m := range tt.msg {
				if !strings.Contains(body, m) {
					t.Errorf("body %s does not name %q", body, m)
				}
			}
			_, stored := e.reports.Get(context.Background(), policy.SourceCI, tt.dgst)
			if stored != (tt.status == http.StatusCreated) {
				t.Errorf("stored = %v after status %d", stored, status)
			}
		})
	}
}

// vexDoc renders an OpenVEX document about the fixture image; each statement is {id, status, time, subcomponent}.
func vexDoc(stmts ...[4]string) []byte {
	var parts []string
	for _, s := range stmts {
		subs := ""
		if s[3] != "" {
			subs = fmt.Sprintf(`,"subcomponents":[{"@id":%q}]`, s[3])
		}
		parts = append(parts, fmt.Sprintf(`{"vulnerability":{"name":%q},"status":%q,"timestamp":%q,"products":[{"@id":%q%s}]}`, s[0], s[1], s[2], fixtureImage, subs))
	}
	return []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://acme.example/vex/1","timestamp":"2026-05-01T00:00:00Z","statements":[` +
		strings.Join(parts, ",") + `]}`)
}

func TestAdminVEXHistory(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	const day1, day2, day3 = "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", "2026-05-03T00:00:00Z"
	steps := []struct {
		name              string
		doc               []byte
		status            int
		waived, withdrawn []string
		stored            []string // id status [package] of what is kept, in posting order
	}{
		{
			name: "waivers, one narrowed to a package",
			doc: vexDoc([4]string{"CVE-1", "not_affected", day1, ""}, [4]string{"CVE-2", "not_affected", day1, "pkg:apk/alpine/openssl@3.1.4-r0"},
				[4]string{"CVE-3", "fixed", day1, ""}),
			status: http.StatusCreated, waived: []string{"CVE-1", "CVE-2 in openssl@3.1.4-r0", "CVE-3"},
			stored: []string{"CVE-1 not_affected", "CVE-2 not_affected openssl", "CVE-3 fixed"},
		},
		{
			name:   "a later document withdraws one",
			doc:    vexDoc([4]string{"CVE-1", "affected", day2, ""}, [4]string{"CVE-2", "under_investigation", day2, "openssl"}),
			status: http.StatusCreated, withdrawn: []string{"CVE-1", "CVE-2 in openssl"},
			stored: []string{"CVE-2 not_affected openssl", "CVE-3 fixed", "CVE-1 affected", "CVE-2 under_investigation openssl"},
		},
		{
			name:   "an older statement posted later changes nothing",
			doc:    vexDoc([4]string{"CVE-1", "not_affected", day1, ""}),
			status: http.StatusCreated,
			stored: []string{"CVE-2 not_affected openssl", "CVE-3 fixed", "CVE-1 affected", "CVE-2 under_investigation openssl"},
		},
		{
			name:   "a newer one waives again",
			doc:    vexDoc([4]string{"CVE-1", "not_affected", day3, ""}),
			status: http.StatusCreated, waived: []string{"CVE-1"},
			stored: []string{"CVE-2 not_affected openssl", "CVE-3 fixed", "CVE-2 under_investigation openssl", "CVE-1 not_affected"},
		},
		{
			name:   "a statement dated in the future is refused",
			doc:    vexDoc([4]string{"CVE-3", "affected", day1, ""}, [4]string{"CVE-9", "not_affected", "2026-06-01T13:00:00Z", ""}),
			status: http.StatusBadRequest,
			stored: []string{"CVE-2 not_affected openssl", "CVE-3 fixed", "CVE-2 under_investigation openssl", "CVE-1 not_affected"},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e.log.Reset()
			status, body := e.post(t, "/admin/v1/vex", s.doc)
			if status != s.status {
				t.Fatalf("status %d, want %d: %s", status, s.status, body)
			}
			var got []string
			for _, st := range e.reports.VEX(ctx, fixtureImage) {
				d := st.IDs[0] + " " + st.Status
				for _, p := range st.Packages {
					d += " " + p.Name
				}
				got = append(got, d)
			}
			if diff := cmp.Diff(s.stored, got); diff != "" {
				t.Errorf("stored statements (-want +got):\n%s", diff)
			}
			if status != http.StatusCreated {
				if !strings.Contains(body, "CVE-9") || !strings.Contains(body, "2026-06-01T13:00:00Z") {
					t.Errorf("refusal %s does not name the statement and its date", body)
				}
				return
			}
			var rec struct {
				Audit  bool          `json:"audit"`
				Actor  string        `json:"actor"`
				Digest digest.Digest `json:"image"`
				Detail struct {
					Waived    []string `json:"waived"`
					Withdrawn []string `json:"withdrawn"`
				} `json:"detail"`
			}
			if err := json.Unmarshal(e.log.Bytes(), &rec); err != nil {
				t.Fatalf("audit record %q: %v", e.log.String(), err)
			}
			if !rec.Audit || rec.Digest != fixtureImage || rec.Actor != "admin" {
				t.Errorf("audit record %s", e.log.String())
			}
			if diff := cmp.Diff(s.waived, rec.Detail.Waived); diff != "" {
				t.Errorf("audit waived (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.withdrawn, rec.Detail.Withdrawn); diff != "" {
				t.Errorf("audit withdrawn (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReportsVEXOldForm: a VEX value stored by an earlier version (a map of id -> note, no packages, no time)
// reads as no statements: its waivers lapse rather than widen, and the next post replaces it.
func TestReportsVEXOldForm(t *testing.T) {
	ctx := context.Background()
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	rs := admission.NewReports(kv, 0)
	if err := kv.Set(ctx, "vex/"+fixtureImage.String(), []byte(`{"CVE-1":"not_affected"}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := rs.VEX(ctx, fixtureImage); len(got) != 0 {
		t.Fatalf("old value read as %+v", got)
	}
	if _, err := rs.PutVEX(ctx, fixtureImage, []policy.VEXStatement{{IDs: []string{"CVE-2"}, Status: policy.VEXFixed}}); err != nil {
		t.Fatal(err)
	}
	if got := rs.VEX(ctx, fixtureImage); len(got) != 1 || got[0].IDs[0] != "CVE-2" {
		t.Errorf("after a post: %+v", got)
	}
}
