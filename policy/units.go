package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var daysRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)d(.*)$`)

// parseDuration parses a non-negative duration: "30s", "5m", "24h" or, beyond
// time.ParseDuration, days with a "d" suffix ("7d", "1.5d", "1d12h"). A plain number without
// a unit is rejected, except "0".
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q (want e.g. 30s, 5m, 24h, 7d)", s)
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '-' || s[0] == '+' {
		return 0, bad
	}
	m := daysRE.FindStringSubmatch(s)
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	days, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, bad
	}
	total := days * float64(24*time.Hour)
	if rest := m[2]; rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, bad
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad
		}
		total += float64(r)
	}
	if total >= math.MaxInt64 {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return time.Duration(math.Round(total)), nil
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
func formatLimit(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

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
