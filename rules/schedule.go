package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed rule schedule, in UTC: rate(N unit) or
// EventBridge's six-field cron(minutes hours day-of-month month
// day-of-week year).
type Schedule struct {
	rate time.Duration
	cron *cronSpec
}

type cronSpec struct {
	min, hour, month, dow [64]bool // indexes: value
	dom                   [32]bool
	lastDOM               bool
	anyDOM, anyDOW        bool
	years                 map[int]bool // nil: every year
}

// ParseSchedule parses "rate(5 minutes)" or "cron(0 12 * * ? *)".
func ParseSchedule(s string) (*Schedule, error) {
	switch {
	case strings.HasPrefix(s, "rate(") && strings.HasSuffix(s, ")"):
		f := strings.Fields(s[5 : len(s)-1])
		if len(f) != 2 {
			return nil, fmt.Errorf("rate takes a value and a unit, as in rate(5 minutes)")
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("rate value %q must be a positive integer", f[0])
		}
		var unit time.Duration
		switch f[1] {
		case "minute", "minutes":
			unit = time.Minute
		case "hour", "hours":
			unit = time.Hour
		case "day", "days":
			unit = 24 * time.Hour
		default:
			return nil, fmt.Errorf("rate unit %q must be minute(s), hour(s) or day(s)", f[1])
		}
		if (n == 1) != !strings.HasSuffix(f[1], "s") {
			return nil, fmt.Errorf("rate(%d %s): use the singular unit for 1 and the plural otherwise", n, f[1])
		}
		return &Schedule{rate: time.Duration(n) * unit}, nil
	case strings.HasPrefix(s, "cron(") && strings.HasSuffix(s, ")"):
		c, err := parseCron(s[5 : len(s)-1])
		if err != nil {
			return nil, err
		}
		return &Schedule{cron: c}, nil
	}
	return nil, fmt.Errorf("must be rate(N unit) or cron(minutes hours day-of-month month day-of-week year)")
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
var dayNames = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

func parseCron(s string) (*cronSpec, error) {
	f := strings.Fields(s)
	if len(f) != 6 {
		return nil, fmt.Errorf("cron has 6 fields (minutes hours day-of-month month day-of-week year), got %d", len(f))
	}
	c := &cronSpec{}
	if err := cronField(f[0], "minutes", 0, 59, nil, c.min[:]); err != nil {
		return nil, err
	}
	if err := cronField(f[1], "hours", 0, 23, nil, c.hour[:]); err != nil {
		return nil, err
	}
	switch {
	case f[2] == "?":
		c.anyDOM = true
	case f[2] == "L":
		c.lastDOM = true
	default:
		if err := cronField(f[2], "day-of-month", 1, 31, nil, c.dom[:]); err != nil {
			return nil, err
		}
	}
	if err := cronField(f[3], "month", 1, 12, monthNames, c.month[:]); err != nil {
		return nil, err
	}
	if f[4] == "?" {
		c.anyDOW = true
	} else if err := cronField(f[4], "day-of-week", 1, 7, dayNames, c.dow[:]); err != nil {
		return nil, err
	}
	if c.anyDOM == c.anyDOW {
		return nil, fmt.Errorf("exactly one of day-of-month and day-of-week must be ?")
	}
	if f[5] != "*" {
		var ys [2200]bool
		if err := cronField(f[5], "year", 1970, 2199, nil, ys[:]); err != nil {
			return nil, err
		}
		c.years = map[int]bool{}
		for y := range ys {
			if ys[y] {
				c.years[y] = true
			}
		}
	}
	return c, nil
}

func cronValue(s, name string, lo, hi int, names map[string]int) (int, error) {
	if n, ok := names[strings.ToUpper(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if strings.ContainsAny(s, "LW#") {
			return 0, fmt.Errorf("%s %q: L, W and # are not supported here", name, s)
		}
		return 0, fmt.Errorf("%s %q is not a number", name, s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s %d is outside %d-%d", name, n, lo, hi)
	}
	return n, nil
}

func cronField(s, name string, lo, hi int, names map[string]int, set []bool) error {
	for _, part := range strings.Split(s, ",") {
		step := 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n < 1 {
				return fmt.Errorf("%s step %q must be a positive integer", name, part[i+1:])
			}
			step = n
			part = part[:i]
		}
		a, b := lo, hi
		switch {
		case part == "*":
		case strings.Contains(part, "-"):
			i := strings.IndexByte(part, '-')
			var err error
			if a, err = cronValue(part[:i], name, lo, hi, names); err != nil {
				return err
			}
			if b, err = cronValue(part[i+1:], name, lo, hi, names); err != nil {
				return err
			}
			if a > b {
				return fmt.Errorf("%s range %s is backwards", name, part)
			}
		default:
			v, err := cronValue(part, name, lo, hi, names)
			if err != nil {
				return err
			}
			a = v
			if step == 1 {
				b = v
			}
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	return nil
}

// Next returns the first time after t the schedule fires. A rate fires
// every period counted from its anchor (the rule's creation).
func (s *Schedule) Next(t, anchor time.Time) time.Time {
	if s.rate > 0 {
		if t.Before(anchor) {
			return anchor
		}
		n := t.Sub(anchor)/s.rate + 1
		return anchor.Add(n * s.rate)
	}
	return s.cron.next(t.UTC())
}

func (c *cronSpec) next(t time.Time) time.Time {
	t = t.Truncate(time.Minute).Add(time.Minute)
	for i := 0; i < 1e6 && t.Year() <= 2199; i++ {
		if c.years != nil && !c.years[t.Year()] {
			t = time.Date(t.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.month[int(t.Month())] {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayOK(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.hour[t.Hour()] {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
			continue
		}
		if !c.min[t.Minute()] {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

func (c *cronSpec) dayOK(t time.Time) bool {
	if c.anyDOM {
		return c.dow[int(t.Weekday())+1]
	}
	if c.lastDOM {
		return t.AddDate(0, 0, 1).Day() == 1
	}
	return c.dom[t.Day()]
}
