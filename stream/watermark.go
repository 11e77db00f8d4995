package stream

import "math"

// watermarks tracks event time per input partition: a partition's
// watermark is the greatest event time it has shown minus the bounded
// out-of-orderness; the job's watermark is the least over partitions that
// are not idle. A partition without events for the idle timeout (processing
// time) stops holding the others back; when every partition is idle the
// watermark moves on with processing time, so windows close in a quiet
// stream. The watermark never goes back.
type watermarks struct {
	ooo, idle int64 // nanoseconds; idle 0 = never idle
	parts     map[int32]*partMark
	wm        int64
	lastAny   int64 // processing time of the last event on any partition
	maxAll    int64 // greatest partition watermark
}

type partMark struct {
	max      int64 // greatest event time seen
	lastSeen int64 // processing time of the last event
}

const noTime = math.MinInt64

func newWatermarks(ooo, idle int64) *watermarks {
	return &watermarks{ooo: ooo, idle: idle, parts: map[int32]*partMark{}, wm: noTime, maxAll: noTime}
}

func (w *watermarks) observe(part int32, ts, now int64) {
	p := w.parts[part]
	if p == nil {
		p = &partMark{max: noTime}
		w.parts[part] = p
	}
	if ts > p.max {
		p.max = ts
	}
	p.lastSeen = now
	w.lastAny = now
	if m := p.max - w.ooo; m > w.maxAll {
		w.maxAll = m
	}
}

// advance recomputes the watermark at processing time now and returns it.
func (w *watermarks) advance(now int64) int64 {
	if len(w.parts) == 0 {
		return w.wm
	}
	least, active := int64(math.MaxInt64), false
	for _, p := range w.parts {
		if w.idle > 0 && now-p.lastSeen >= w.idle {
			continue
		}
		active = true
		if m := p.max - w.ooo; m < least {
			least = m
		}
	}
	if !active {
		// Every partition is idle: let processing time carry event time.
		least = w.maxAll
		if w.idle > 0 {
			least += now - w.lastAny - w.idle
		}
	}
	if least > w.wm {
		w.wm = least
	}
	return w.wm
}
