package strictyaml

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DurationError is a duration that does not parse. Text is the duration as given.
type DurationError struct {
	Text string
}

// Error says what is wrong and what a duration looks like.
func (e *DurationError) Error() string {
	return fmt.Sprintf("invalid duration %q (want e.g. 30s, 5m, 24h, 7d)", e.Text)
}

var daysRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)d(.*)$`)

// ParseDuration parses a duration written as a string: what time.ParseDuration accepts
// ("30s", "5m", "1h30m") or, beyond it, whole or fractional days with a "d" suffix, optionally
// followed by smaller units ("7d", "1.5d", "1d12h"). A plain number without a unit is
// rejected, except "0", so "30" is never read as 30ns. Surrounding space is ignored and a
// leading sign is allowed ("-2d"); callers that want neither check the text first. Errors
// are *DurationError, except for an empty string and a duration too long for time.Duration.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	neg := false
	body := s
	if body[0] == '-' || body[0] == '+' {
		neg = body[0] == '-'
		body = body[1:]
	}
	m := daysRE.FindStringSubmatch(body)
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, &DurationError{Text: s}
		}
		return d, nil
	}
	days, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, &DurationError{Text: s}
	}
	total := days * float64(24*time.Hour)
	if rest := m[2]; rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, &DurationError{Text: s}
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, &DurationError{Text: s}
		}
		total += float64(r)
	}
	if total >= math.MaxInt64 {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	d := time.Duration(math.Round(total))
	if neg {
		d = -d
	}
	return d, nil
}

// FormatDuration formats d compactly so that ParseDuration reads it back unchanged: whole
// days as "7d", otherwise as time.Duration does without trailing zero units ("36h", "1h30m",
// "5m", "1.5s").
func FormatDuration(d time.Duration) string {
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
