package httpapi

import (
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/internal/httpjson"
)

func (a *API) needGroups() error {
	if a.g == nil {
		return httpjson.Errorf(httpjson.CodeUnavailable, "", "this server has no group coordinator")
	}
	return nil
}

type groupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocolType"`
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	if err := a.needGroups(); err != nil {
		return err
	}
	p, err := parsePage(r, a.cfg.MaxPageSize)
	if err != nil {
		return err
	}
	var states []string
	if s := r.URL.Query().Get("state"); s != "" {
		states = strings.Split(s, ",")
	}
	all := a.g.List(states)
	byName := map[string]groups.GroupSummary{}
	names := make([]string, 0, len(all))
	for _, g := range all {
		byName[g.Group] = g
		names = append(names, g.Group)
	}
	sort.Strings(names)
	page, next := p.cut(names)
	out := struct {
		Groups        []groupSummary `json:"groups"`
		NextPageToken string         `json:"nextPageToken,omitempty"`
	}{Groups: []groupSummary{}, NextPageToken: next}
	for _, n := range page {
		g := byName[n]
		out.Groups = append(out.Groups, groupSummary{g.Group, g.State, g.ProtocolType})
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
	return nil
}

type groupMember struct {
	MemberID   string `json:"memberId"`
	InstanceID string `json:"instanceId,omitempty"`
	ClientID   string `json:"clientId"`
	ClientHost string `json:"clientHost"`
}

type groupOffset struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	CommittedOffset int64  `json:"committedOffset"`
	EndOffset       int64  `json:"endOffset"`
	Lag             int64  `json:"lag"`
	Metadata        string `json:"metadata,omitempty"`
}

type groupDescription struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocolType"`
	Protocol     string        `json:"protocol,omitempty"`
	Generation   int32         `json:"generation"`
	Members      []groupMember `json:"members"`
	Offsets      []groupOffset `json:"offsets"`
	TotalLag     int64         `json:"totalLag"`
}

func (a *API) describeGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needGroups(); err != nil {
		return err
	}
	name := r.PathValue("group")
	gd := a.g.Describe(name)
	if gd.Err != nil {
		if errors.Is(gd.Err, groups.ErrInvalidGroupID) {
			return invalid("group", "%q is not a valid group id", name)
		}
		return gd.Err
	}
	offs, err := a.g.FetchOffsets(r.Context(), name, nil)
	if err != nil {
		return err
	}
	if gd.State == "Dead" && len(offs) == 0 {
		return notFoundf("group", "no group %q", name)
	}
	d := groupDescription{Group: name, State: gd.State, ProtocolType: gd.ProtocolType, Protocol: gd.Protocol,
		Generation: gd.Generation, Members: []groupMember{}, Offsets: []groupOffset{}}
	for _, m := range gd.Members {
		d.Members = append(d.Members, groupMember{m.MemberID, m.InstanceID, m.ClientID, m.ClientHost})
	}
	for tp, o := range offs {
		end, ok := a.b.HighWatermark(tp.Topic, tp.Partition)
		if !ok {
			end = -1
		}
		lag := max(end-o.Offset, 0)
		if end < 0 {
			lag = 0
		}
		d.Offsets = append(d.Offsets, groupOffset{tp.Topic, tp.Partition, o.Offset, end, lag, o.Metadata})
		d.TotalLag += lag
	}
	slices.SortFunc(d.Offsets, func(x, y groupOffset) int {
		if c := strings.Compare(x.Topic, y.Topic); c != 0 {
			return c
		}
		return int(x.Partition - y.Partition)
	})
	httpjson.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needGroups(); err != nil {
		return err
	}
	name := r.PathValue("group")
	if err := a.g.Delete(r.Context(), name); err != nil {
		switch {
		case errors.Is(err, groups.ErrGroupIDNotFound):
			return notFoundf("group", "no group %q", name)
		case errors.Is(err, groups.ErrNonEmptyGroup):
			return httpjson.Errorf(httpjson.CodeFailedPrecondition, "group", "group %q has active members; stop them first", name)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ResetRequest is the body of POST /v1/groups/{group}/offsets:reset.
type ResetRequest struct {
	// Topics names the partitions to reset (no partitions: all of the
	// topic's); AllTopics resets every partition the group has committed.
	Topics    []ResetTopic `json:"topics"`
	AllTopics bool         `json:"allTopics"`
	// To is earliest, latest, offset (Offset), time (Time) or shift
	// (ShiftBy).
	To      string `json:"to"`
	Offset  *int64 `json:"offset"`
	Time    string `json:"time"`
	ShiftBy *int64 `json:"shiftBy"`
	// DryRun computes and returns the new offsets without committing.
	DryRun bool `json:"dryRun"`
}

// ResetTopic is one topic of a reset.
type ResetTopic struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

type resetPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   *int64 `json:"current"`
	New       int64  `json:"new"`
	LagAfter  int64  `json:"lagAfter"`
}

func (a *API) resetGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needGroups(); err != nil {
		return err
	}
	name := r.PathValue("group")
	var req ResetRequest
	if err := httpjson.Decode(w, r, a.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	var at time.Time
	switch req.To {
	case "earliest", "latest":
	case "offset":
		if req.Offset == nil || *req.Offset < 0 {
			return invalid("offset", "to=offset needs offset, 0 or more")
		}
	case "time":
		t, err := time.Parse(time.RFC3339Nano, req.Time)
		if err != nil {
			return invalid("time", "%q: want an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", req.Time)
		}
		at = t
	case "shift":
		if req.ShiftBy == nil {
			return invalid("shiftBy", "to=shift needs shiftBy")
		}
	default:
		return invalid("to", "%q: want earliest, latest, offset, time or shift", req.To)
	}
	if (len(req.Topics) > 0) == req.AllTopics {
		return invalid("topics", "give topics or allTopics: true")
	}
	gd := a.g.Describe(name)
	if gd.Err != nil {
		if errors.Is(gd.Err, groups.ErrInvalidGroupID) {
			return invalid("group", "%q is not a valid group id", name)
		}
		return gd.Err
	}
	if len(gd.Members) > 0 {
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "group", "group %q has %d active members (state %s); offsets can be reset only while it is empty", name, len(gd.Members), gd.State)
	}
	offs, err := a.g.FetchOffsets(r.Context(), name, nil)
	if err != nil {
		return err
	}
	var parts []groups.TopicPartition
	if req.AllTopics {
		if len(offs) == 0 {
			return notFoundf("group", "group %q has no committed offsets; name the topics", name)
		}
		for tp := range offs {
			parts = append(parts, tp)
		}
	} else {
		for i, t := range req.Topics {
			ti, err := a.b.Topic(t.Topic)
			if err != nil {
				return notFoundf("topics["+itoa(i)+"].topic", "no topic %q", t.Topic)
			}
			if len(t.Partitions) == 0 {
				for p := 0; p < ti.Partitions; p++ {
					parts = append(parts, groups.TopicPartition{Topic: t.Topic, Partition: int32(p)})
				}
			}
			for _, p := range t.Partitions {
				if p < 0 || int(p) >= ti.Partitions {
					return invalid("topics["+itoa(i)+"].partitions", "%d: topic %q has partitions 0 to %d", p, t.Topic, ti.Partitions-1)
				}
				parts = append(parts, groups.TopicPartition{Topic: t.Topic, Partition: p})
			}
		}
	}
	slices.SortFunc(parts, func(x, y groups.TopicPartition) int {
		if c := strings.Compare(x.Topic, y.Topic); c != 0 {
			return c
		}
		return int(x.Partition - y.Partition)
	})
	parts = slices.Compact(parts)
	set := map[groups.TopicPartition]groups.Offset{}
	out := struct {
		Group      string           `json:"group"`
		Executed   bool             `json:"executed"`
		Partitions []resetPartition `json:"partitions"`
	}{Group: name, Executed: !req.DryRun, Partitions: []resetPartition{}}
	for _, tp := range parts {
		start, end, err := a.b.Offsets(tp.Topic, tp.Partition)
		if err != nil {
			return topicErr(tp.Topic, err)
		}
		rp := resetPartition{Topic: tp.Topic, Partition: tp.Partition}
		if o, ok := offs[tp]; ok {
			c := o.Offset
			rp.Current = &c
		}
		var n int64
		switch req.To {
		case "earliest":
			n = start
		case "latest":
			n = end
		case "offset":
			n = *req.Offset
		case "time":
			off, _, err := a.b.ListOffset(r.Context(), tp.Topic, tp.Partition, at.UnixMilli())
			if err != nil {
				return err
			}
			n = off
			if off < 0 {
				n = end
			}
		case "shift":
			base := start
			if rp.Current != nil {
				base = *rp.Current
			}
			n = base + *req.ShiftBy
		}
		n = min(max(n, start), end)
		rp.New, rp.LagAfter = n, end-n
		out.Partitions = append(out.Partitions, rp)
		set[tp] = groups.Offset{Offset: n, LeaderEpoch: -1}
	}
	if !req.DryRun {
		if err := a.g.SetOffsets(r.Context(), name, set); err != nil {
			if errors.Is(err, groups.ErrNonEmptyGroup) {
				return httpjson.Errorf(httpjson.CodeFailedPrecondition, "group", "group %q has active members; offsets can be reset only while it is empty", name)
			}
			return err
		}
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
