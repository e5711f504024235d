package clair

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"

	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// Bounds on one notification.
const (
	maxWebhookBody   = 64 << 10
	notificationPage = 500
	// MaxNotifiedManifests caps the manifests one notification may make Portcullis fetch a
	// report for; the rest wait for their report's maxAge or the next notification.
	MaxNotifiedManifests = 10000
)

// notificationIDRE is what a notification id (Clair's token) may look like: a UUID in practice.
var notificationIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// webhook is Clair's Notification Webhook body.
type webhook struct {
	NotificationID string `json:"notification_id"`
	Callback       string `json:"callback"`
}

// notificationPageResp is Clair's Notification Page.
type notificationPageResp struct {
	Page struct {
		Size int    `json:"size"`
		Next string `json:"next"`
	} `json:"page"`
	Notifications []struct {
		ID       string `json:"id"`
		Manifest string `json:"manifest"`
		Reason   string `json:"reason"`
	} `json:"notifications"`
}

// Store keeps a fresh report for an image; the caller's store makes the image's next pull
// decide again with it (admission.Reports.Put with policy.SourceScanner).
type Store func(ctx context.Context, dgst digest.Digest, r *policy.ScanReport) error

// NotificationHandler returns the handler for Clair's notifier webhook. For each notification
// it pages through the affected manifests, fetches each one's vulnerability report again from
// the matcher and hands it to store, then deletes the notification, and answers 204 once done
// (so an image Clair names is decided again by the time Clair hears back). The callback URL in
// the webhook is not followed: the notification is read from this client's own Clair by its id,
// so a forged webhook can make Portcullis re-read reports from Clair and nothing else. log may
// be nil.
func (c *Client) NotificationHandler(store Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a Clair notification webhook", http.StatusMethodNotAllowed)
			return
		}
		b, err := readCapped(r.Body, maxWebhookBody)
		var hook webhook
		if err == nil {
			err = json.Unmarshal(b, &hook)
		}
		if err == nil && !notificationIDRE.MatchString(hook.NotificationID) {
			err = fmt.Errorf("bad notification_id %q", hook.NotificationID)
		}
		if err != nil {
			http.Error(w, "clair webhook: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := c.handleNotification(r.Context(), hook.NotificationID, store)
		if err != nil {
			log.Warn("clair notification not handled; Clair will deliver it again", "notification", hook.NotificationID, "redecided", n, "error", err)
			http.Error(w, "clair webhook: "+err.Error(), http.StatusBadGateway)
			return
		}
		log.Info("clair notification handled", "notification", hook.NotificationID, "redecided", n)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleNotification re-reads the report of every manifest notification id names and stores it;
// it returns how many it stored.
func (c *Client) handleNotification(ctx context.Context, id string, store Store) (int, error) {
	seen := map[digest.Digest]bool{}
	var order []digest.Digest
	next := ""
	for pages := 0; ; pages++ {
		q := url.Values{"page_size": {fmt.Sprint(notificationPage)}}
		if next != "" {
			q.Set("next", next)
		}
		var page notificationPageResp
		if _, err := c.call(ctx, http.MethodGet, c.endpoint("notifier/api/v1/notification", id)+"?"+q.Encode(), "", nil, maxIndexBody, &page); err != nil {
			return 0, err
		}
		for _, n := range page.Notifications {
			d, err := digest.Parse(n.Manifest)
			if err != nil || seen[d] {
				continue
			}
			if len(order) >= MaxNotifiedManifests {
				break
			}
			seen[d] = true
			order = append(order, d)
		}
		if page.Page.Next == "" || page.Page.Next == next || len(order) >= MaxNotifiedManifests || pages > MaxNotifiedManifests/notificationPage {
			break
		}
		next = page.Page.Next
	}
	stored := 0
	for _, d := range order {
		rep, err := c.Report(ctx, d)
		if err != nil {
			return stored, fmt.Errorf("report of %s: %w", d, err)
		}
		if err := store(ctx, d, rep); err != nil {
			return stored, fmt.Errorf("store report of %s: %w", d, err)
		}
		stored++
	}
	if _, err := c.call(ctx, http.MethodDelete, c.endpoint("notifier/api/v1/notification", id), "", nil, 0, nil); err != nil {
		return stored, err
	}
	return stored, nil
}
