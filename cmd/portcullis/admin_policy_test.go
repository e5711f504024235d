package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/cosigntest"
)

// cliPolicy is the policy of TestAdminCLIPolicy: images signed by release, and team/scanned also without a
// finding above medium in a CI report.
const cliPolicy = "trust:\n  release: {key: release.pub}\nrules:\n" +
	"  - name: scanned\n    match: {repository: team/scanned}\n    signedBy: {anyOf: [release]}\n    scan: {maxSeverity: medium, sources: [ci]}\n" +
	"default:\n  signedBy: {anyOf: [release]}\n"

// cliCandidate would have team/app scanned too, and let everything else through unsigned.
const cliCandidate = "trust:\n  release: {key: release.pub}\nrules:\n" +
	"  - name: app-scanned\n    match: {repository: team/app}\n    signedBy: {anyOf: [release]}\n    scan: {maxSeverity: high, sources: [ci]}\n" +
	"default: {}\n"

// TestAdminCLIPolicy drives explain, policy show/reload/preview and decisions forget against the running binary
// with a policy, real signatures and a CI report: the human answers say the decision, what made it and each
// requirement with its evidence; -o json is the API's JSON.
func TestAdminCLIPolicy(t *testing.T) {
	bin := cosigntest.Binary(t)
	priv, pub := cosigntest.KeyPair(t)
	polDir := t.TempDir()
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	pol, candidate := filepath.Join(polDir, "policy.yaml"), filepath.Join(polDir, "candidate.yaml")
	for name, content := range map[string]string{"release.pub": string(pubPEM), "policy.yaml": cliPolicy, "candidate.yaml": cliCandidate,
		"bad.yaml": "default:\n  signedBy: {anyOf: [nobody]}\n"} {
		if err := os.WriteFile(filepath.Join(polDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := startAdminApp(t, func(cfg *configs.Config) { cfg.Policy = pol })
	up := a.up.Host()

	signed := a.up.PushRandomImage(t, "team/app:v1", 1, 512)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, a.up.Ref("team/app@"+sd.String()), priv)
	unsigned := a.up.PushRandomImage(t, "team/app:v2", 1, 512)
	ud, _ := unsigned.Digest()
	scanned := a.up.PushRandomImage(t, "team/scanned:v1", 1, 512)
	scd, _ := scanned.Digest()
	cosigntest.Sign(t, bin, a.up.Ref("team/scanned@"+scd.String()), priv)

	ci, viewer := a.tokenFile(t, "ci-cli", ciSecret), a.tokenFile(t, "viewer-cli", viewerSecret)
	conn := func(tokenFile string) []string { return []string{"--admin", a.url, "--token-file", tokenFile} }
	// A CI report naming no digest (Grype's SARIF), with a critical finding, for team/scanned.
	if code, _, stderr := cli(append([]string{"admin", "report", scd.String(), "../../verifier/report/testdata/grype-image.sarif.json"}, conn(ci)...)...); code != 0 {
		t.Fatalf("report: %s", stderr)
	}
	// Pulled through the proxy: decisions cached, the pull log written.
	for _, path := range []string{"/v2/team/app/manifests/v1", "/v2/team/app/manifests/v2", "/v2/team/scanned/manifests/v1"} {
		resp, err := http.Get("http://" + a.addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	var denyID string
	steps := []struct {
		name string
		args []string
		code int
		out  []string // substrings of stdout
		err  []string // substrings of stderr
		not  []string // not in stdout
		then func(t *testing.T, stdout string)
	}{
		{name: "explain a signed image pulled before", args: append([]string{"admin", "explain", "team/app:v1"}, conn(viewer)...),
			out: []string{"image:     " + up + "/team/app@" + sd.String(), "tag:       v1", "rule:      default (enforce)",
				"decision:  ALLOWED, by the cached decision", "list:      no entry names it", "cached:    ALLOWED by rule default (enforce), until 20",
				"evidence:  gathered now; on it rule default (enforce) alone decides ALLOWED",
				"  [pass] signature: signed by release\n", "         signature by release: verified (cosign-tag)\n"}},
		{name: "explain an unsigned image", args: append([]string{"admin", "explain", up + "/team/app:v2"}, conn(viewer)...),
			out: []string{"decision:  DENIED", "message:   portcullis: " + up + "/team/app@" + ud.String() + " denied by rule \"default\"",
				"  [FAIL] signature: not signed by release (no signatures found)\n", "signature by release: not verified (no signatures found)"}},
		{name: "explain an image with a critical finding", args: append([]string{"admin", "explain", "team/scanned:v1"}, conn(viewer)...),
			out: []string{"rule:      scanned (enforce)", "decision:  DENIED", "  [pass] signature: signed by release\n",
				"  [FAIL] scan: 1 critical above medium", "report: ci (grype 0.87.0), scan time unknown; max severity medium",
				"findings: 1 critical, 1 medium, 1 low", "counts: GHSA-v778-237x-gjrc (critical) in golang.org/x/crypto v0.21.0"}},
		{name: "deny it", args: nil, out: []string{"added deny-list entry"}},
		{name: "explain a deny-listed image", args: append([]string{"admin", "explain", "team/app:v1"}, conn(viewer)...),
			out: []string{"decision:  DENIED, by a deny-list entry", "list:      deny-list entry deny-", "(withdrawn for the test), by ci, expires never",
				"  [pass] signature: signed by release"}},
		{name: "explain as JSON", args: append([]string{"admin", "explain", "team/app:v1", "-o", "json"}, conn(viewer)...),
			then: func(t *testing.T, stdout string) {
				var x struct {
					DecidedBy  string
					List       struct{ ID string }
					Evaluation struct {
						Requirements []struct{ Requirement string }
					}
				}
				if err := json.Unmarshal([]byte(stdout), &x); err != nil || x.DecidedBy != "deny-list" || x.List.ID != denyID ||
					len(x.Evaluation.Requirements) != 1 || x.Evaluation.Requirements[0].Requirement != "signature" {
					t.Errorf("explain -o json: %v\n%s", err, stdout)
				}
			}},
		{name: "undeny it", args: nil, out: []string{"removed deny-list entry"}},
		{name: "explain an unknown tag", args: append([]string{"admin", "explain", "team/app:v9"}, conn(viewer)...), code: 1,
			err: []string{"GET /admin/v1/explain: 404 IMAGE_UNKNOWN"}},
		{name: "policy show", args: append([]string{"admin", "policy", "show"}, conn(viewer)...),
			out: []string{"file:      " + pol + "\n", "hash:      ", "loaded:    20", "rules:     scanned\n", "default:   yes\n"}},
		{name: "policy show as JSON", args: append([]string{"admin", "policy", "show", "-o", "json"}, conn(viewer)...),
			out: []string{`"hasDefault": true`, `"rules": [`}},
		{name: "policy preview", args: append([]string{"admin", "policy", "preview", candidate, "--since", "1h"}, conn(viewer)...),
			out: []string{"replayed:  3 images pulled since 20", "1 unchanged, 1 newly denied, 1 newly allowed, 0 errors, 0 skipped",
				"newly denied (1):\n  " + up + "/team/app@" + sd.String() + " (tag v1, last pulled 20",
				"    now:       ALLOWED by rule default (enforce)\n      [pass] signature: signed by release\n",
				"    candidate: DENIED by rule app-scanned (enforce)\n      [pass] signature: signed by release\n",
				"      [FAIL] scan: no scan report\n",
				"newly allowed (1):\n  " + up + "/team/scanned@" + scd.String(),
				"    now:       DENIED by rule scanned (enforce)\n", "      [FAIL] scan: 1 critical above medium",
				"    candidate: ALLOWED by rule default (enforce)\n      (the rule requires nothing)\n"},
			not: []string{"/team/app@" + ud.String()}},
		{name: "policy preview as JSON", args: append([]string{"admin", "policy", "preview", candidate, "-o", "json", "--max", "2"}, conn(viewer)...),
			then: func(t *testing.T, stdout string) {
				var pv struct {
					Counts struct{ Replayed, Skipped int }
				}
				if err := json.Unmarshal([]byte(stdout), &pv); err != nil || pv.Counts.Replayed != 2 || pv.Counts.Skipped != 1 {
					t.Errorf("preview -o json --max 2: %v\n%s", err, stdout)
				}
			}},
		{name: "policy preview of an invalid candidate", args: append([]string{"admin", "policy", "preview", filepath.Join(polDir, "bad.yaml")}, conn(viewer)...),
			code: 1, err: []string{"400 POLICY_INVALID", "candidate.yaml:2", "nobody"}},
		{name: "policy preview with a bad window", args: append([]string{"admin", "policy", "preview", candidate, "--since", "yesterday"}, conn(viewer)...),
			code: 2, err: []string{`--since: want a duration such as 24h or 7d, not "yesterday"`}},
		{name: "policy preview without a file", args: append([]string{"admin", "policy", "preview"}, conn(viewer)...), code: 2, err: []string{"want one policy FILE"}},
		{name: "policy reload, unchanged", args: append([]string{"admin", "policy", "reload", "--reason", "just checking"}, conn(ci)...),
			out: []string{"the policy file holds the policy in force (", "): nothing changed"}},
		{name: "a read token may not reload", args: append([]string{"admin", "policy", "reload"}, conn(viewer)...), code: 1,
			err: []string{"POST /admin/v1/policy/reload: 403 DENIED"}},
		{name: "decisions forget an image", args: append([]string{"admin", "decisions", "forget", "team/app:v1", "--reason", "key rotated"}, conn(ci)...),
			out: []string{"forgot the cached decisions about " + up + "/team/app@" + sd.String() + ", on every replica (1 digest)"}},
		{name: "explain after forgetting", args: append([]string{"admin", "explain", "team/app:v1"}, conn(viewer)...),
			out: []string{"decision:  ALLOWED, by the rule, evaluated now", "cached:    no decision (a pull evaluates the rule)"}},
		{name: "decisions forget a repository", args: append([]string{"admin", "decisions", "forget", "--repository", up + "/team/app"}, conn(ci)...),
			out: []string{"forgot the cached decisions about " + up + "/team/app, on every replica (2 digests)", "  " + sd.String(), "  " + ud.String()}},
		{name: "decisions forget as JSON", args: append([]string{"admin", "decisions", "forget", "--repository", up + "/team/scanned", "-o", "json"}, conn(ci)...),
			out: []string{`"count": 1`, scd.String()}},
		{name: "decisions forget neither", args: append([]string{"admin", "decisions", "forget"}, conn(ci)...), code: 2,
			err: []string{"want one IMAGE or --repository UPSTREAM/REPO"}},
		{name: "decisions forget both", args: append([]string{"admin", "decisions", "forget", "team/app:v1", "--repository", up + "/team/app"}, conn(ci)...), code: 2,
			err: []string{"want one IMAGE or --repository UPSTREAM/REPO"}},
		{name: "decisions forget a repository with a tag", args: append([]string{"admin", "decisions", "forget", "--repository", "team/app:v1"}, conn(ci)...), code: 1,
			err: []string{"400 PARAM_INVALID"}},
		{name: "a read token may not forget", args: append([]string{"admin", "decisions", "forget", "team/app:v1"}, conn(viewer)...), code: 1, err: []string{"403 DENIED"}},
		{name: "decisions without forget", args: []string{"admin", "decisions", "drop"}, code: 2, err: []string{"want forget IMAGE"}},
		{name: "policy without a verb", args: []string{"admin", "policy"}, code: 2, err: []string{"want show, reload or preview FILE"}},
		{name: "policy reload, changed", args: nil, out: []string{"policy reloaded on every replica: "}},
		{name: "policy show after the reload", args: append([]string{"admin", "policy", "show"}, conn(viewer)...), out: []string{"rules:     app-scanned\n", "default:   yes"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			args := s.args
			switch s.name {
			case "deny it":
				args = append([]string{"admin", "deny", "add", up + "/team/app@" + sd.String(), "--reason", "withdrawn for the test"}, conn(ci)...)
			case "undeny it":
				args = append([]string{"admin", "deny", "rm", denyID}, conn(ci)...)
			case "policy reload, changed":
				if err := os.WriteFile(pol, []byte(cliCandidate), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"admin", "policy", "reload", "--reason", "scan team/app too"}, conn(ci)...)
			}
			var code int
			var stdout, stderr string
			if strings.HasPrefix(s.name, "policy preview") && s.code == 0 {
				// The pulls are written to the log in the background: wait for all three.
				within(5*time.Second, func() bool {
					code, stdout, stderr = cli(args...)
					return code != 0 || !strings.Contains(stdout, "replayed:  ") || strings.Contains(stdout, "replayed:  3 ") || strings.Contains(stdout, `"replayed": 2`)
				})
			} else {
				code, stdout, stderr = cli(args...)
			}
			if code != s.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.code, stdout, stderr)
			}
			for _, w := range s.out {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout)
				}
			}
			for _, w := range s.not {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout contains %q:\n%s", w, stdout)
				}
			}
			for _, w := range s.err {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr)
				}
			}
			if s.name == "deny it" {
				recs, _ := a.auditor.Query(t.Context(), admission.AuditQuery{Limit: 1})
				if len(recs) == 1 {
					denyID = recs[0].Entry
				}
			}
			if s.then != nil {
				s.then(t, stdout)
			}
		})
	}
	// The reasons given reached the audit log with who gave them.
	recs, err := a.auditor.Query(t.Context(), admission.AuditQuery{Kind: admission.AuditChange})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"decisions.forget": "key rotated", "policy.reload": "scan team/app too"}
	for _, r := range recs {
		if reason, ok := want[r.Action]; ok && r.Reason == reason && r.Actor == "ci" {
			delete(want, r.Action)
		}
	}
	if len(want) > 0 {
		t.Errorf("no audit record by ci for %v: %+v", want, recs)
	}
}
