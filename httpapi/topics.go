package httpapi

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strconv"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/internal/httpjson"
)

// page is one page of a list sorted by name.
type page struct {
	size  int
	after string // names after this one
}

// parsePage reads pageSize (default 100, at most max) and pageToken (the
// opaque token a previous page returned).
func parsePage(r *http.Request, max int) (page, error) {
	p := page{size: min(100, max)}
	q := r.URL.Query()
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > max {
			return p, invalid("pageSize", "%q: want an integer from 1 to %d", s, max)
		}
		p.size = n
	}
	if t := q.Get("pageToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(b) == 0 {
			return p, invalid("pageToken", "not a token this API returned")
		}
		p.after = string(b)
	}
	return p, nil
}

// cut returns the page of sorted names and the next page token ("" at the
// end).
func (p page) cut(sorted []string) (names []string, next string) {
	i := sort.SearchStrings(sorted, p.after)
	if p.after != "" && i < len(sorted) && sorted[i] == p.after {
		i++
	}
	end := min(i+p.size, len(sorted))
	names = sorted[i:end]
	if end < len(sorted) {
		next = base64.RawURLEncoding.EncodeToString([]byte(sorted[end-1]))
	}
	return names, next
}

type topicSummary struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Internal   bool   `json:"internal"`
}

func (a *API) listTopics(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r, a.cfg.MaxPageSize)
	if err != nil {
		return err
	}
	all, err := boolParam(r, "internal")
	if err != nil {
		return err
	}
	byName := map[string]broker.TopicInfo{}
	var names []string
	for _, t := range a.b.Topics() {
		if t.Internal && !all {
			continue
		}
		byName[t.Name] = t
		names = append(names, t.Name)
	}
	sort.Strings(names)
	page, next := p.cut(names)
	out := struct {
		Topics        []topicSummary `json:"topics"`
		NextPageToken string         `json:"nextPageToken,omitempty"`
	}{Topics: []topicSummary{}, NextPageToken: next}
	for _, n := range page {
		t := byName[n]
		out.Topics = append(out.Topics, topicSummary{t.Name, t.Partitions, t.Internal})
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
	return nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, invalid(name, "%q: want true or false", s)
	}
	return v, nil
}

type createTopicRequest struct {
	Name       string            `json:"name"`
	Partitions *int              `json:"partitions"`
	Configs    map[string]string `json:"configs"`
}

func (a *API) createTopic(w http.ResponseWriter, r *http.Request) error {
	var req createTopicRequest
	if err := httpjson.Decode(w, r, a.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	if err := broker.ValidateTopicName(req.Name); err != nil {
		return invalid("name", "%v", err)
	}
	n := a.b.DefaultPartitions()
	if req.Partitions != nil {
		n = *req.Partitions
		if n < 1 || n > broker.MaxPartitions {
			return invalid("partitions", "%d: want 1 to %d", n, broker.MaxPartitions)
		}
	}
	if err := broker.ValidateTopicConfigs(req.Configs); err != nil {
		return invalid("configs", "%v", err)
	}
	if err := a.b.CreateTopic(r.Context(), req.Name, n, req.Configs); err != nil {
		if e := mapError(err); isCode(e, httpjson.CodeAlreadyExists) {
			return httpjson.Errorf(httpjson.CodeAlreadyExists, "name", "topic %q already exists", req.Name)
		}
		return err
	}
	d, err := a.topicDescription(req.Name)
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusCreated, d)
	return nil
}

type topicDescription struct {
	Name       string             `json:"name"`
	ID         string             `json:"id"`
	Internal   bool               `json:"internal"`
	Partitions []partitionOffsets `json:"partitions"`
	Configs    []topicConfig      `json:"configs"`
}

type partitionOffsets struct {
	Partition   int32 `json:"partition"`
	StartOffset int64 `json:"startOffset"`
	EndOffset   int64 `json:"endOffset"`
	SizeBytes   int64 `json:"sizeBytes"`
}

type topicConfig struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

func sourceName(s broker.ConfigSource) string {
	switch s {
	case broker.SourceTopic:
		return "topic"
	case broker.SourceBroker:
		return "broker"
	}
	return "default"
}

func (a *API) topicDescription(name string) (topicDescription, error) {
	t, err := a.b.Topic(name)
	if err != nil {
		return topicDescription{}, topicErr(name, err)
	}
	parts, err := a.b.Partitions(name)
	if err != nil {
		return topicDescription{}, topicErr(name, err)
	}
	cfgs, err := a.b.DescribeConfigs(name)
	if err != nil {
		return topicDescription{}, topicErr(name, err)
	}
	d := topicDescription{Name: t.Name, ID: base64.RawURLEncoding.EncodeToString(t.ID[:]), Internal: t.Internal,
		Partitions: []partitionOffsets{}, Configs: []topicConfig{}}
	for _, p := range parts {
		d.Partitions = append(d.Partitions, partitionOffsets{p.Partition, p.StartOffset, p.HighWatermark, p.Size})
	}
	for _, c := range cfgs {
		d.Configs = append(d.Configs, topicConfig{c.Name, c.Value, sourceName(c.Source), c.ReadOnly})
	}
	return d, nil
}

// topicErr names the topic in a not-found error.
func topicErr(name string, err error) error {
	if e := mapError(err); isCode(e, httpjson.CodeNotFound) {
		return notFoundf("topic", "no topic %q", name)
	}
	return err
}

func isCode(err error, code string) bool {
	e, ok := err.(*httpjson.Error)
	return ok && e.Code == code
}

func (a *API) describeTopic(w http.ResponseWriter, r *http.Request) error {
	d, err := a.topicDescription(r.PathValue("topic"))
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, d)
	return nil
}

type alterTopicRequest struct {
	// Configs sets each config; a null value resets it to its default.
	Configs      map[string]*string `json:"configs"`
	Partitions   *int               `json:"partitions"`
	ValidateOnly bool               `json:"validateOnly"`
}

func (a *API) alterTopic(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	var req alterTopicRequest
	if err := httpjson.Decode(w, r, a.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	t, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	if len(req.Configs) == 0 && req.Partitions == nil {
		return invalid("", "nothing to change: give configs or partitions")
	}
	if req.Partitions != nil && (*req.Partitions < t.Partitions || *req.Partitions > broker.MaxPartitions) {
		return invalid("partitions", "%d: partitions can only grow, from %d up to %d", *req.Partitions, t.Partitions, broker.MaxPartitions)
	}
	if len(req.Configs) > 0 {
		// Validate first, so a bad config leaves the partitions alone too.
		if err := a.b.AlterConfigs(r.Context(), name, req.Configs, true); err != nil {
			return configErr(name, err)
		}
	}
	if !req.ValidateOnly && req.Partitions != nil && *req.Partitions > t.Partitions {
		if err := a.b.CreatePartitions(r.Context(), name, *req.Partitions); err != nil {
			return topicErr(name, err)
		}
	}
	if !req.ValidateOnly && len(req.Configs) > 0 {
		if err := a.b.AlterConfigs(r.Context(), name, req.Configs, false); err != nil {
			return configErr(name, err)
		}
	}
	d, err := a.topicDescription(name)
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, d)
	return nil
}

func configErr(name string, err error) error {
	if e := mapError(err); isCode(e, httpjson.CodeInvalidArgument) {
		return invalid("configs", "%v", err)
	}
	return topicErr(name, err)
}

func (a *API) deleteTopic(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	if t, err := a.b.Topic(name); err == nil && t.Internal {
		return invalid("topic", "%q is internal and cannot be deleted", name)
	}
	if err := a.b.DeleteTopic(r.Context(), name); err != nil {
		return topicErr(name, err)
	}
	a.dedup.forget(name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
