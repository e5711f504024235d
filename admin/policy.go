package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/strictyaml"
)

// Policies is the policy in force and its file. *admission.PolicyFile implements it.
type Policies interface {
	Status() admission.PolicyStatus
	// Reload loads the file again and puts it in force on every replica; actor and reason go to the audit log.
	Reload(ctx context.Context, actor, reason string) (admission.PolicyChange, error)
	// Candidate compiles a policy document without putting it in force.
	Candidate(doc []byte) (admission.Candidate, error)
}

var _ Policies = (*admission.PolicyFile)(nil)

// Previewer replays recent pulls under a candidate policy. *admission.Gate implements it.
type Previewer interface {
	Preview(ctx context.Context, cand admission.Candidate, ms admission.Manifests, opts admission.PreviewOptions) (admission.Preview, error)
}

var _ Previewer = (*admission.Gate)(nil)

// WithPolicy serves GET /admin/v1/policy (read), POST /admin/v1/policy/reload (write) and POST
// /admin/v1/policy/preview (read: it changes nothing) with p, replaying with pv and fetching manifests with ms.
// Default: not served.
func WithPolicy(p Policies, pv Previewer, ms admission.Manifests) Option {
	return func(a *API) error {
		if p == nil || pv == nil || ms == nil {
			return errors.New("admin: policy routes need the policy file, a previewer and a manifest source")
		}
		a.policies, a.previewer, a.manifests = p, pv, ms
		return nil
	}
}

// maxPolicyBytes caps a candidate policy document.
const maxPolicyBytes = 1 << 20

// maxPreviewSince is the longest window a preview replays.
const maxPreviewSince = 30 * 24 * time.Hour

func (a *API) getPolicy(w http.ResponseWriter, _ *http.Request, _ Principal) {
	st := a.policies.Status()
	writeAdminJSON(w, http.StatusOK, map[string]any{"file": st.File, "hash": st.Hash, "shortHash": shortHash(st.Hash),
		"loaded": st.Loaded.UTC(), "rules": st.Rules, "hasDefault": st.HasDefault})
}

func (a *API) reloadPolicy(w http.ResponseWriter, r *http.Request, who Principal) {
	ch, err := a.policies.Reload(r.Context(), who.Name, r.Header.Get("X-Portcullis-Reason"))
	if err != nil {
		adminError(w, http.StatusBadRequest, "POLICY_INVALID", "the policy file was not loaded; the running policy stays: "+err.Error())
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"old": ch.Old, "new": ch.New, "changed": ch.Changed(), "shortHash": shortHash(ch.New)})
}

// previewAnswer is the answer of POST /admin/v1/policy/preview.
type previewAnswer struct {
	Policy       string         `json:"policy"`
	Candidate    string         `json:"candidate"`
	Since        time.Time      `json:"since"`
	Counts       previewCounts  `json:"counts"`
	NewlyDenied  []changeAnswer `json:"newlyDenied"`
	NewlyAllowed []changeAnswer `json:"newlyAllowed"`
	Errors       []failAnswer   `json:"errors"`
}

type previewCounts struct {
	Replayed     int `json:"replayed"`
	Unchanged    int `json:"unchanged"`
	NewlyDenied  int `json:"newlyDenied"`
	NewlyAllowed int `json:"newlyAllowed"`
	Errors       int `json:"errors"`
	// Skipped counts the images pulled in the window but not replayed (past ?max=, the least recently pulled).
	Skipped int `json:"skipped"`
}

type changeAnswer struct {
	pulledAnswer
	// Now is the decision under the policy in force, Candidate under the candidate.
	Now       decisionAnswer `json:"now"`
	Candidate decisionAnswer `json:"candidate"`
	// List is the list entry that decides the image before any policy: pulls of it do not change while it stands.
	List *admission.ListEntry `json:"list,omitempty"`
}

type failAnswer struct {
	pulledAnswer
	Error string `json:"error"`
}

type pulledAnswer struct {
	Image      string        `json:"image"`
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"`
	LastPulled time.Time     `json:"lastPulled"`
}

func pulledOf(p admission.PulledImage) pulledAnswer {
	return pulledAnswer{Image: p.Image(), Upstream: p.Upstream, Repository: p.Repository, Tag: p.Tag, Digest: p.Digest, LastPulled: p.Time}
}

// previewPolicy answers POST /admin/v1/policy/preview?since=24h&max=1000 with a candidate policy document as the body.
func (a *API) previewPolicy(w http.ResponseWriter, r *http.Request, _ Principal) {
	opts, ok := previewOptions(w, r)
	if !ok {
		return
	}
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPolicyBytes))
	if err != nil {
		adminError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("candidate policy over %d bytes", maxPolicyBytes))
		return
	}
	cand, err := a.policies.Candidate(doc)
	if err != nil {
		adminError(w, http.StatusBadRequest, "POLICY_INVALID", err.Error())
		return
	}
	p, err := a.previewer.Preview(r.Context(), cand, a.manifests, opts)
	switch {
	case errors.Is(err, admission.ErrPreviewRunning):
		adminError(w, http.StatusConflict, "PREVIEW_RUNNING", err.Error())
		return
	case errors.Is(err, admission.ErrNoPullLog):
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "cannot preview: "+err.Error())
		return
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "preview stopped: "+err.Error())
		return
	}
	ans := previewAnswer{Policy: p.Policy, Candidate: p.Candidate, Since: p.Since,
		Counts:      previewCounts{Replayed: p.Replayed, Unchanged: p.Unchanged, NewlyDenied: p.NewlyDenied, NewlyAllowed: p.NewlyAllowed, Errors: p.Errors, Skipped: p.Skipped},
		NewlyDenied: []changeAnswer{}, NewlyAllowed: []changeAnswer{}, Errors: []failAnswer{}}
	for _, c := range p.Changes {
		ca := changeAnswer{pulledAnswer: pulledOf(c.Image), Now: decisionOf(c.Before), Candidate: decisionOf(c.After), List: c.List}
		if c.NewlyDenied() {
			ans.NewlyDenied = append(ans.NewlyDenied, ca)
		} else {
			ans.NewlyAllowed = append(ans.NewlyAllowed, ca)
		}
	}
	for _, f := range p.Failures {
		ans.Errors = append(ans.Errors, failAnswer{pulledAnswer: pulledOf(f.Image), Error: f.Error})
	}
	writeAdminJSON(w, http.StatusOK, ans)
}

// previewOptions reads ?since= (a duration: 24h, 7d; default 24h, at most 30d) and ?max= (1 to 10000; default
// 1000), answering a bad one itself.
func previewOptions(w http.ResponseWriter, r *http.Request) (admission.PreviewOptions, bool) {
	var opts admission.PreviewOptions
	q := r.URL.Query()
	if v := q.Get("since"); v != "" {
		d, err := strictyaml.ParseDuration(v)
		if err != nil || d <= 0 || d > maxPreviewSince {
			adminError(w, http.StatusBadRequest, "PARAM_INVALID", "since: want a duration from 1s to 30d such as 24h or 7d, not "+strconv.Quote(v))
			return opts, false
		}
		opts.Since = d
	}
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > admission.MaxRecentPulls {
			adminError(w, http.StatusBadRequest, "PARAM_INVALID", fmt.Sprintf("max: want 1 to %d, not %q", admission.MaxRecentPulls, v))
			return opts, false
		}
		opts.MaxImages = n
	}
	return opts, true
}

// shortHash is a policy hash as people compare them: its first 12 hex digits.
func shortHash(h string) string { return h[:min(len(h), 12)] }
