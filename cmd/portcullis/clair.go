package main

import (
	"context"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/clair"
	"github.com/portcullis/portcullis/verifier/harbor"
)

// scannerClient builds the client of a policy scanner by the API it speaks.
func scannerClient(sc policy.Scanner) (admission.Scanner, error) {
	hc := &http.Client{Timeout: sc.Timeout, Transport: tls12Transport()}
	if sc.Kind == policy.ScannerClair {
		return clair.New(sc.URL, clair.WithHTTPClient(hc))
	}
	return harbor.New(sc.URL, harbor.WithHTTPClient(hc))
}

// clairWebhook serves Clair's notifier webhook at POST /clair/{scanner}/notify on the ops listener: the
// manifests a new vulnerability affects get their report read again from that Clair and stored, which makes
// their next pull, on every replica, decide again. The scanner is looked up in the policy in force; a name that
// is not a clair scanner there is 404. The webhook's body only names a notification to read from the configured
// Clair (its callback URL is not followed), so it needs no credential: a forged one costs a few report reads.
func (a *app) clairWebhook(w http.ResponseWriter, r *http.Request) {
	if a.gate == nil || a.reports == nil {
		http.NotFound(w, r)
		return
	}
	sc, ok := a.gate.Policy().Scanners()[r.PathValue("scanner")]
	if !ok || sc.Kind != policy.ScannerClair {
		http.Error(w, "no clair scanner of that name in the policy", http.StatusNotFound)
		return
	}
	c, err := clair.New(sc.URL, clair.WithHTTPClient(&http.Client{Timeout: sc.Timeout, Transport: tls12Transport()}))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	store := func(ctx context.Context, d digest.Digest, rep *policy.ScanReport) error {
		return a.reports.Put(ctx, policy.SourceScanner, d, rep)
	}
	c.NotificationHandler(store, a.log.With("scanner", sc.Name)).ServeHTTP(w, r)
}
