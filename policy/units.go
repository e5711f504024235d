package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// parseDuration parses a non-negative duration (see strictyaml.ParseDuration): "30s", "5m",
// "24h" or days with a "d" suffix ("7d", "1.5d", "1d12h"). A sign is an error, and so is a
// plain number without a unit, except "0". Errors quote s as given, spaces included.
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	d, err := strictyaml.ParseDuration(t)
	var bad *strictyaml.DurationError
	if t == "" || t[0] == '-' || t[0] == '+' || errors.As(err, &bad) {
		return 0, &strictyaml.DurationError{Text: s}
	}
	return d, err
}

// formatAge formats a duration for messages, coarsely: "9d", "5h", "12m", "30s".
func formatAge(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d >= time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// formatLimit formats a configured duration for messages: whole days as "7d", otherwise as
// time.Duration does, without trailing zero units ("36h", "90m").
func formatLimit(d time.Duration) string { return strictyaml.FormatDuration(d) }

// parseUntil parses an allowlist expiry: a date (YYYY-MM-DD), meaning the end of that day in
// UTC, or an RFC 3339 time. The entry applies while now is not after the result.
func parseUntil(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Add(24*time.Hour - time.Nanosecond), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid date %q (want YYYY-MM-DD or an RFC 3339 time)", s)
}
