package registry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/schema"
)

// DefaultTopic is the internal compacted topic the registry lives in.
const DefaultTopic = "_schemas"

// Mode is a registry or subject mode.
type Mode string

// Modes: READWRITE (default), READONLY (no registrations or deletes),
// IMPORT (registrations must carry their id and version, for migrating a
// registry with its ids).
const (
	ReadWrite Mode = "READWRITE"
	ReadOnly  Mode = "READONLY"
	Import    Mode = "IMPORT"
)

// ParseMode parses a mode name (case-insensitive).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToUpper(s)); m {
	case ReadWrite, ReadOnly, Import:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want READWRITE, READONLY or IMPORT", s)
}

// Config configures a Registry. Log is required.
type Config struct {
	// Log holds the registry's topic (created, compacted, if missing).
	Log eventlog.Log
	// Topic is the registry's topic (default "_schemas").
	Topic string
	// MaxSchemaBytes bounds a schema's text (default 1 MiB).
	MaxSchemaBytes int
	// Logger defaults to slog.Default(); a nil Registerer registers no
	// metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnEvent, if set, receives a herald.schema.registered event (source
	// "herald/registry") when a new version of a subject is registered.
	OnEvent event.Hook
}

// The system event the registry emits through Config.OnEvent.
const (
	SystemSource         = "herald/registry"
	TypeSchemaRegistered = "herald.schema.registered"
)

// RegisteredEvent is the data of a herald.schema.registered event.
type RegisteredEvent struct {
	Subject    string `json:"subject"`
	Version    int    `json:"version"`
	ID         int    `json:"id"`
	SchemaType string `json:"schema_type"`
}

// Registry is a schema registry whose state lives in a compacted topic and
// is served from memory. It is the only writer of its topic: run one per
// topic. All methods are safe for concurrent use.
type Registry struct {
	cfg    Config
	logger *slog.Logger
	m      *metrics

	wmu sync.Mutex // serializes writes: check, append, apply
	mu  sync.RWMutex
	st  state // guarded by mu; changed only under wmu too
}

type schemaRec struct {
	id     int
	typ    schema.Type
	text   string
	refs   []schema.Reference
	guid   string
	fp     string
	parsed schema.Schema
	// The answers to GET /schemas/ids/{id} and /schemas/ids/{id}/schema.
	byID, textResp *rendered
}

type version struct {
	version, id int
	deleted     bool
	resp        *rendered // GET /subjects/{s}/versions/{v}
}

type state struct {
	ids      map[int]*schemaRec
	byFP     map[string]int
	byGUID   map[string]int
	subjects map[string][]*version // sorted by version
	config   map[string]schema.Level
	modes    map[string]Mode
	maxID    int
}

func newState() state {
	return state{ids: map[int]*schemaRec{}, byFP: map[string]int{}, byGUID: map[string]int{},
		subjects: map[string][]*version{}, config: map[string]schema.Level{}, modes: map[string]Mode{}}
}

// Open creates the topic if needed, loads the registry from it and returns
// it ready to serve.
func Open(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Log == nil {
		return nil, errors.New("registry: Config.Log is required")
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.MaxSchemaBytes <= 0 {
		cfg.MaxSchemaBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{cfg: cfg, logger: cfg.Logger, st: newState(), m: newMetrics(cfg.Registerer)}
	// Room for a schema at the size limit, JSON-escaped, with its key.
	maxMsg := strconv.Itoa(max(2*cfg.MaxSchemaBytes+64<<10, 1<<20))
	configs := map[string]string{
		"cleanup.policy": "compact", "retention.ms": "-1", "max.message.bytes": maxMsg,
		// fsync'd whatever the server's default: producers keep the ids
		// the registry hands out.
		"herald.durability": "always",
	}
	err := cfg.Log.CreateTopic(ctx, cfg.Topic, 1, configs)
	if errors.Is(err, eventlog.ErrInvalidArgument) {
		// Not Herald (a Kafka cluster through kafkalog): its own
		// durability applies.
		delete(configs, "herald.durability")
		err = cfg.Log.CreateTopic(ctx, cfg.Topic, 1, configs)
	}
	if err != nil && !errors.Is(err, eventlog.ErrTopicExists) {
		return nil, fmt.Errorf("registry: create %s: %w", cfg.Topic, err)
	}
	start := time.Now()
	n, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	r.logger.Info("schema registry loaded", "topic", cfg.Topic, "records", n, "schemas", len(r.st.ids),
		"subjects", len(r.st.subjects), "took", time.Since(start).Round(time.Millisecond))
	return r, nil
}

func (r *Registry) load(ctx context.Context) (int, error) {
	start, end, err := r.cfg.Log.Offsets(ctx, r.cfg.Topic, 0)
	if err != nil {
		return 0, fmt.Errorf("registry: %s offsets: %w", r.cfg.Topic, err)
	}
	n := 0
	for off := start; off < end; {
		recs, err := r.cfg.Log.Read(ctx, r.cfg.Topic, 0, off, eventlog.ReadOptions{})
		if err != nil {
			return n, fmt.Errorf("registry: read %s at %d: %w", r.cfg.Topic, off, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			off = rec.Offset + 1
			d, err := decodeRecord(rec.Key, rec.Value)
			if err != nil {
				// Not ours (any Kafka client can write the topic): one bad
				// record must not keep the registry down. Reported, not
				// applied.
				r.m.corrupt.Inc()
				r.logger.Error("schema registry: skipping a record it cannot decode", "topic", r.cfg.Topic, "offset", rec.Offset, "err", err)
				continue
			}
			if err := r.st.apply(d); err != nil {
				r.m.corrupt.Inc()
				r.logger.Error("schema registry: skipping a record", "topic", r.cfg.Topic, "offset", rec.Offset, "err", err)
				continue
			}
			n++
		}
	}
	// Parse in id order: a schema's references are to earlier ids.
	ids := make([]int, 0, len(r.st.ids))
	for id := range r.st.ids {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		s := r.st.ids[id]
		deps, err := r.st.deps(s.refs)
		if err == nil {
			s.parsed, err = schema.Parse(s.typ, s.text, deps)
		}
		if err != nil {
			// Kept (its id still answers); it cannot be compared or
			// validated against.
			r.logger.Warn("schema registry: stored schema does not parse", "id", id, "err", err)
			continue
		}
		r.st.setFP(s)
	}
	return n, nil
}

// apply changes memory for one durable record. It refuses (changing
// nothing) a version whose id has no schema and an id's reassignment:
// records only another writer could have written.
func (st *state) apply(d record) error {
	k := d.key
	switch k.KeyType {
	case keySchemaID:
		v := d.schema
		typ := v.SchemaType
		if typ == "" {
			typ = schema.Avro
		}
		old, replaced := st.ids[v.ID]
		if replaced && (old.text != v.Schema || old.typ != typ) {
			return fmt.Errorf("schema id %d is already assigned to another schema; ids are never reassigned", v.ID)
		}
		if replaced && slices.Equal(old.refs, v.References) {
			return nil // the same schema again
		}
		s := &schemaRec{id: v.ID, typ: typ, text: v.Schema, refs: v.References}
		s.guid = guidOf(s)
		s.byID, s.textResp = render(schemaBody(s)), render([]byte(s.text))
		if replaced {
			delete(st.byGUID, old.guid)
		}
		st.ids[v.ID] = s
		st.byGUID[s.guid] = v.ID
		st.maxID = max(st.maxID, v.ID)
		if replaced {
			// Other references (a record another writer made): the
			// versions with this id answer with the new ones.
			for subject, vs := range st.subjects {
				for _, ver := range vs {
					if ver.id == v.ID {
						ver.resp = st.renderVersion(subject, ver)
					}
				}
			}
		}
	case keySubjectVersion:
		if d.version != nil && st.ids[d.version.ID] == nil {
			return fmt.Errorf("subject %q version %d has schema id %d, which has no schema", *k.Subject, k.Version, d.version.ID)
		}
		vs := st.subjects[*k.Subject]
		i, found := slices.BinarySearchFunc(vs, k.Version, func(v *version, n int) int { return v.version - n })
		var nv *version
		if d.version != nil {
			// A new version, its answer rendered anew: readers holding the
			// old one still see a consistent response.
			nv = &version{version: k.Version, id: d.version.ID, deleted: d.version.Deleted}
			nv.resp = st.renderVersion(*k.Subject, nv)
		}
		switch {
		case nv == nil && found:
			vs = slices.Delete(vs, i, i+1)
		case found:
			vs[i] = nv
		case nv != nil:
			vs = slices.Insert(vs, i, nv)
		}
		if len(vs) == 0 {
			delete(st.subjects, *k.Subject)
		} else {
			st.subjects[*k.Subject] = vs
		}
	case keyConfig:
		if d.config == nil {
			delete(st.config, *k.Subject)
		} else {
			st.config[*k.Subject] = d.config.CompatibilityLevel
		}
	case keyMode:
		if d.mode == nil {
			delete(st.modes, *k.Subject)
		} else {
			st.modes[*k.Subject] = d.mode.Mode
		}
	}
	return nil
}

func (st *state) setFP(s *schemaRec) {
	s.fp = schema.Fingerprint(s.parsed, s.refs)
	if _, ok := st.byFP[s.fp]; !ok {
		st.byFP[s.fp] = s.id
	}
}

// guidOf derives a stable UUID-shaped GUID from the schema's stored form.
func guidOf(s *schemaRec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", s.typ, s.text)
	for _, r := range s.refs {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%d", r.Name, r.Subject, r.Version)
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50 // version 5 (name-based, SHA)
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// SchemaJSON is a schema as the API returns it.
type SchemaJSON struct {
	Subject    string             `json:"subject,omitempty"`
	Version    int                `json:"version,omitempty"`
	ID         int                `json:"id,omitempty"`
	GUID       string             `json:"guid,omitempty"`
	SchemaType string             `json:"schemaType,omitempty"`
	References []schema.Reference `json:"references,omitempty"`
	Schema     string             `json:"schema"`
	Deleted    bool               `json:"deleted,omitempty"`
	// MaxID is the highest id in the registry, for GET
	// /schemas/ids/{id}?fetchMaxId=true.
	MaxID int `json:"maxId,omitempty"`
}

func typeField(t schema.Type) string {
	if t == schema.Avro {
		return "" // Confluent omits the default type
	}
	return string(t)
}

func schemaBody(s *schemaRec) []byte {
	b, _ := json.Marshal(SchemaJSON{SchemaType: typeField(s.typ), References: s.refs, Schema: s.text, GUID: s.guid})
	return b
}

// deps resolves references transitively into dependency order.
func (st *state) deps(refs []schema.Reference) ([]schema.Dep, error) {
	var out []schema.Dep
	seen := map[string]bool{}
	var visit func(refs []schema.Reference, depth int) error
	visit = func(refs []schema.Reference, depth int) error {
		if depth > 32 {
			return errors.New("references nested deeper than 32")
		}
		for _, ref := range refs {
			if ref.Name == "" {
				return fmt.Errorf("reference to subject %q version %d has no name", ref.Subject, ref.Version)
			}
			v := st.version(ref.Subject, ref.Version, true)
			if v == nil {
				return fmt.Errorf("reference %q: subject %q version %d not found", ref.Name, ref.Subject, ref.Version)
			}
			s := st.ids[v.id]
			if seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			if err := visit(s.refs, depth+1); err != nil {
				return err
			}
			out = append(out, schema.Dep{Name: ref.Name, Text: s.text})
		}
		return nil
	}
	return out, visit(refs, 0)
}

// version finds a subject's version (-1: the latest), live only unless
// deleted.
func (st *state) version(subject string, v int, deleted bool) *version {
	return findVersion(st.subjects[subject], v, deleted)
}

func (st *state) live(subject string) []*version {
	var out []*version
	for _, v := range st.subjects[subject] {
		if !v.deleted {
			out = append(out, v)
		}
	}
	return out
}

func (st *state) level(subject string) schema.Level {
	if l, ok := st.config[subject]; ok {
		return l
	}
	if l, ok := st.config[""]; ok {
		return l
	}
	return schema.DefaultLevel
}

func (st *state) mode(subject string) Mode {
	if m, ok := st.modes[subject]; ok {
		return m
	}
	if m, ok := st.modes[""]; ok {
		return m
	}
	return ReadWrite
}

// write appends records (key, value; nil value is a tombstone) in one
// atomic append and applies them once durable. Callers hold wmu.
func (r *Registry) write(ctx context.Context, recs ...eventlog.Record) error {
	if _, err := r.cfg.Log.Append(ctx, r.cfg.Topic, 0, recs); err != nil {
		r.m.storeErrors.Inc()
		return &Error{Code: ErrStore, Message: fmt.Sprintf("Error while storing in %s: %v", r.cfg.Topic, err)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		d, err := decodeRecord(rec.Key, rec.Value)
		if err != nil {
			panic(fmt.Sprintf("registry: wrote a record it cannot read: %v", err)) // a bug in this package
		}
		if err := r.st.apply(d); err != nil {
			panic(fmt.Sprintf("registry: wrote a record it cannot apply: %v", err))
		}
	}
	return nil
}

func jsonRec(k recKey, v any) eventlog.Record {
	rec := eventlog.Record{Key: encodeKey(k)}
	if v != nil {
		rec.Value, _ = json.Marshal(v)
	}
	return rec
}

// validSubject refuses names the API cannot carry.
func validSubject(s string) error {
	if s == "" || len(s) > 1024 || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return &Error{Code: ErrInvalidSubject, Message: fmt.Sprintf("Invalid subject %q: want 1 to 1024 bytes of UTF-8 without control characters", s)}
	}
	return nil
}

// RegisterRequest is the body of POST /subjects/{s}/versions.
type RegisterRequest struct {
	Schema     string             `json:"schema"`
	SchemaType string             `json:"schemaType,omitempty"`
	References []schema.Reference `json:"references,omitempty"`
	// ID and Version are for IMPORT mode only.
	ID      int `json:"id,omitempty"`
	Version int `json:"version,omitempty"`
}

// parse resolves references and parses a request's schema.
func (r *Registry) parse(req RegisterRequest) (schema.Schema, []schema.Reference, error) {
	t, err := schema.ParseType(req.SchemaType)
	if err != nil {
		return nil, nil, &Error{Code: ErrInvalidSchema, Message: "Invalid schema: " + err.Error()}
	}
	if len(req.Schema) > r.cfg.MaxSchemaBytes {
		return nil, nil, &Error{Code: ErrSchemaTooLarge, Message: fmt.Sprintf("Schema is %d bytes, over the limit of %d", len(req.Schema), r.cfg.MaxSchemaBytes)}
	}
	if strings.TrimSpace(req.Schema) == "" {
		return nil, nil, &Error{Code: ErrInvalidSchema, Message: "Invalid schema: field \"schema\" is empty"}
	}
	r.mu.RLock()
	refs := slices.Clone(req.References)
	for i := range refs {
		if refs[i].Version == -1 { // pin "latest" at registration
			if v := r.st.version(refs[i].Subject, -1, false); v != nil {
				refs[i].Version = v.version
			}
		}
	}
	deps, err := r.st.deps(refs)
	r.mu.RUnlock()
	if err != nil {
		return nil, nil, &Error{Code: ErrInvalidSchema, Message: "Invalid schema: " + err.Error()}
	}
	s, err := schema.Parse(t, req.Schema, deps)
	if err != nil {
		return nil, nil, &Error{Code: ErrInvalidSchema, Message: fmt.Sprintf("Invalid schema: %s schema: %v", t, strings.TrimPrefix(err.Error(), schema.ErrInvalid.Error()+": "))}
	}
	return s, refs, nil
}

// Register registers a schema under a subject and returns its id: the
// existing one when the subject already has it (no new version), the id
// the same schema has elsewhere, or a new one. It fails with 409 when the
// subject's compatibility level refuses the schema.
func (r *Registry) Register(ctx context.Context, subject string, req RegisterRequest) (id int, err error) {
	defer func() { r.m.op("register", err) }()
	if err := validSubject(subject); err != nil {
		return 0, err
	}
	s, refs, err := r.parse(req)
	if err != nil {
		return 0, err
	}
	fp := schema.Fingerprint(s, refs)

	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	mode := r.st.mode(subject)
	live := r.st.live(subject)
	all := r.st.subjects[subject]
	level := r.st.level(subject)
	existing, known := r.st.byFP[fp]
	var prev []schema.Versioned
	for _, v := range live {
		if r.st.ids[v.id].fp == fp && (req.ID <= 0 || req.ID == v.id) {
			r.mu.RUnlock()
			return v.id, nil // already registered: no new version
		}
		if p := r.st.ids[v.id].parsed; p != nil {
			prev = append(prev, schema.Versioned{Version: v.version, Schema: p})
		}
	}
	var idTaken *schemaRec
	if req.ID > 0 {
		idTaken = r.st.ids[req.ID]
	}
	maxID := r.st.maxID
	r.mu.RUnlock()

	if mode == ReadOnly {
		return 0, &Error{Code: ErrOperationNotPermitted, Message: fmt.Sprintf("Subject %s is in read-only mode", subject)}
	}
	next := 1
	if len(all) > 0 {
		next = all[len(all)-1].version + 1
	}
	if req.ID > 0 || req.Version > 0 {
		if mode != Import {
			return 0, &Error{Code: ErrOperationNotPermitted, Message: "Overwrite new schema with a given id or version is only allowed in IMPORT mode"}
		}
		if req.Version > 0 {
			if req.Version < next {
				return 0, &Error{Code: ErrInvalidVersion, Message: fmt.Sprintf("Version %d is not after the subject's latest version %d", req.Version, next-1)}
			}
			next = req.Version
		}
	} else if mode == Import {
		return 0, &Error{Code: ErrOperationNotPermitted, Message: fmt.Sprintf("Subject %s is in IMPORT mode: registrations must give id and version", subject)}
	}
	if mode != Import {
		if msgs := schema.Check(level, s, prev); len(msgs) > 0 {
			r.m.incompatible.Inc()
			return 0, &Error{Code: ErrIncompatible, Message: fmt.Sprintf("Schema being registered is incompatible with an earlier schema for subject %q (level %s): %s", subject, level, strings.Join(msgs, "; ")), Messages: msgs}
		}
	}
	var recs []eventlog.Record
	switch {
	case req.ID > 0:
		id = req.ID
		if idTaken != nil && idTaken.fp != fp {
			return 0, &Error{Code: ErrIDDoesNotMatch, Message: fmt.Sprintf("Schema id %d is taken by a different schema", id)}
		}
		if idTaken == nil {
			recs = append(recs, jsonRec(recKey{KeyType: keySchemaID, ID: id}, schemaValue{ID: id, SchemaType: s.Type(), Schema: req.Schema, References: refs}))
		}
	case known:
		id = existing
	default:
		id = maxID + 1
		recs = append(recs, jsonRec(recKey{KeyType: keySchemaID, ID: id}, schemaValue{ID: id, SchemaType: s.Type(), Schema: req.Schema, References: refs}))
	}
	recs = append(recs, jsonRec(recKey{KeyType: keySubjectVersion, Subject: strp(subject), Version: next}, versionValue{ID: id}))
	if err := r.write(ctx, recs...); err != nil {
		return 0, err
	}
	r.mu.Lock()
	if rec := r.st.ids[id]; rec.parsed == nil {
		rec.parsed = s
		r.st.setFP(rec)
	}
	r.mu.Unlock()
	r.logger.Info("schema registered", "subject", subject, "version", next, "id", id, "type", s.Type())
	r.cfg.OnEvent.Emit(ctx, SystemSource, TypeSchemaRegistered, subject,
		RegisteredEvent{Subject: subject, Version: next, ID: id, SchemaType: string(s.Type())})
	return id, nil
}

// subjectSchema renders a subject's version.
func (st *state) subjectSchema(subject string, v *version) SchemaJSON {
	s := st.ids[v.id]
	return SchemaJSON{Subject: subject, Version: v.version, ID: v.id, GUID: s.guid, SchemaType: typeField(s.typ),
		References: s.refs, Schema: s.text, Deleted: v.deleted}
}

// Lookup finds the version of subject that holds the schema.
func (r *Registry) Lookup(subject string, req RegisterRequest, deleted bool) (SchemaJSON, error) {
	r.mu.RLock()
	_, ok := r.st.subjects[subject]
	r.mu.RUnlock()
	if !ok {
		return SchemaJSON{}, errSubjectNotFound(subject)
	}
	s, refs, err := r.parse(req)
	if err != nil {
		return SchemaJSON{}, err
	}
	fp := schema.Fingerprint(s, refs)
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.st.subjects[subject]
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		if (deleted || !v.deleted) && r.st.ids[v.id].fp == fp {
			return r.st.subjectSchema(subject, v), nil
		}
	}
	if len(r.st.live(subject)) == 0 && !deleted {
		return SchemaJSON{}, errSubjectNotFound(subject)
	}
	return SchemaJSON{}, &Error{Code: ErrSchemaNotFound, Message: "Schema not found"}
}

func errSubjectNotFound(s string) error {
	return &Error{Code: ErrSubjectNotFound, Message: fmt.Sprintf("Subject '%s' not found.", s)}
}

func errVersionNotFound(s string, v int) error {
	return &Error{Code: ErrVersionNotFound, Message: fmt.Sprintf("Version %d not found for subject '%s'.", v, s)}
}

// referencedBy lists the ids of live schemas referencing subject version.
func (st *state) referencedBy(subject string, version int) []int {
	var ids []int
	for id, s := range st.ids {
		for _, ref := range s.refs {
			if ref.Subject == subject && ref.Version == version && st.idUsed(id) {
				ids = append(ids, id)
				break
			}
		}
	}
	sort.Ints(ids)
	return ids
}

// idUsed: some live subject version has the id.
func (st *state) idUsed(id int) bool {
	for _, vs := range st.subjects {
		for _, v := range vs {
			if v.id == id && !v.deleted {
				return true
			}
		}
	}
	return false
}

func (r *Registry) writable(subject string) error {
	if m := r.st.mode(subject); m == ReadOnly {
		return &Error{Code: ErrOperationNotPermitted, Message: fmt.Sprintf("Subject %s is in read-only mode", subject)}
	}
	return nil
}

// DeleteSubject soft-deletes every live version of subject, or, with
// permanent, removes a soft-deleted subject for good. It returns the
// versions deleted.
func (r *Registry) DeleteSubject(ctx context.Context, subject string, permanent bool) (_ []int, err error) {
	defer func() { r.m.op("delete_subject", err) }()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	vs := slices.Clone(r.st.subjects[subject])
	live := r.st.live(subject)
	werr := r.writable(subject)
	var refd []int
	for _, v := range vs {
		refd = append(refd, r.st.referencedBy(subject, v.version)...)
	}
	r.mu.RUnlock()
	if len(vs) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	if werr != nil {
		return nil, werr
	}
	if len(refd) > 0 {
		return nil, &Error{Code: ErrReferenceExists, Message: fmt.Sprintf("One or more references exist to the schema {subject=%s}: referenced by schema ids %v", subject, refd)}
	}
	var recs []eventlog.Record
	var out []int
	if !permanent {
		if len(live) == 0 {
			return nil, &Error{Code: ErrSubjectSoftDeleted, Message: fmt.Sprintf("Subject '%s' was soft deleted. Set permanent=true to delete permanently", subject)}
		}
		for _, v := range live {
			recs = append(recs, jsonRec(recKey{KeyType: keySubjectVersion, Subject: strp(subject), Version: v.version}, versionValue{ID: v.id, Deleted: true}))
			out = append(out, v.version)
		}
	} else {
		if len(live) > 0 {
			return nil, &Error{Code: ErrSubjectNotSoftDeleted, Message: fmt.Sprintf("Subject '%s' was not deleted first before being permanently deleted", subject)}
		}
		for _, v := range vs {
			recs = append(recs, jsonRec(recKey{KeyType: keySubjectVersion, Subject: strp(subject), Version: v.version}, nil))
			out = append(out, v.version)
		}
		r.mu.RLock()
		if _, ok := r.st.config[subject]; ok {
			recs = append(recs, jsonRec(recKey{KeyType: keyConfig, Subject: strp(subject)}, nil))
		}
		if _, ok := r.st.modes[subject]; ok {
			recs = append(recs, jsonRec(recKey{KeyType: keyMode, Subject: strp(subject)}, nil))
		}
		r.mu.RUnlock()
	}
	if err := r.write(ctx, recs...); err != nil {
		return nil, err
	}
	r.logger.Info("schema subject deleted", "subject", subject, "permanent", permanent, "versions", out)
	return out, nil
}

// DeleteVersion soft-deletes one version (-1: the latest), or, with
// permanent, removes a soft-deleted one for good.
func (r *Registry) DeleteVersion(ctx context.Context, subject string, ver int, permanent bool) (_ int, err error) {
	defer func() { r.m.op("delete_version", err) }()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	_, exists := r.st.subjects[subject]
	v := r.st.version(subject, ver, true)
	if ver == -1 && !permanent {
		v = r.st.version(subject, -1, false)
	}
	werr := r.writable(subject)
	var refd []int
	if v != nil {
		refd = r.st.referencedBy(subject, v.version)
	}
	r.mu.RUnlock()
	switch {
	case !exists:
		return 0, errSubjectNotFound(subject)
	case v == nil:
		return 0, errVersionNotFound(subject, ver)
	case werr != nil:
		return 0, werr
	case len(refd) > 0:
		return 0, &Error{Code: ErrReferenceExists, Message: fmt.Sprintf("One or more references exist to the schema {subject=%s, version=%d}: referenced by schema ids %v", subject, v.version, refd)}
	}
	var rec eventlog.Record
	key := recKey{KeyType: keySubjectVersion, Subject: strp(subject), Version: v.version}
	if !permanent {
		if v.deleted {
			return 0, &Error{Code: ErrVersionSoftDeleted, Message: fmt.Sprintf("Subject '%s' Version %d was soft deleted. Set permanent=true to delete permanently", subject, v.version)}
		}
		rec = jsonRec(key, versionValue{ID: v.id, Deleted: true})
	} else {
		if !v.deleted {
			return 0, &Error{Code: ErrVersionNotSoftDeleted, Message: fmt.Sprintf("Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v.version)}
		}
		rec = jsonRec(key, nil)
	}
	if err := r.write(ctx, rec); err != nil {
		return 0, err
	}
	r.logger.Info("schema version deleted", "subject", subject, "version", v.version, "permanent", permanent)
	return v.version, nil
}

// SetLevel sets the compatibility level of subject ("" for the global).
// Levels can be changed in every mode (READONLY guards schemas, not
// configuration).
func (r *Registry) SetLevel(ctx context.Context, subject string, l schema.Level) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.write(ctx, jsonRec(recKey{KeyType: keyConfig, Subject: strp(subject)}, configValue{CompatibilityLevel: l}))
}

// DeleteLevel removes subject's level ("" resets the global one) and
// returns what it was.
func (r *Registry) DeleteLevel(ctx context.Context, subject string) (schema.Level, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	prev, ok := r.st.config[subject]
	if subject == "" && !ok {
		prev = schema.DefaultLevel
	}
	r.mu.RUnlock()
	if !ok && subject != "" {
		return "", &Error{Code: ErrSubjectLevelCompatibilityNotConfigured, Message: fmt.Sprintf("Subject '%s' does not have subject-level compatibility configured", subject)}
	}
	return prev, r.write(ctx, jsonRec(recKey{KeyType: keyConfig, Subject: strp(subject)}, nil))
}

// SetMode sets the mode of subject ("" for the global). IMPORT needs an
// empty registry (or subject) unless force.
func (r *Registry) SetMode(ctx context.Context, subject string, m Mode, force bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	nonEmpty := len(r.st.subjects) > 0
	if subject != "" {
		nonEmpty = len(r.st.subjects[subject]) > 0
	}
	r.mu.RUnlock()
	if m == Import && nonEmpty && !force {
		return &Error{Code: ErrOperationNotPermitted, Message: "Cannot import since found existing subjects (use force=true)"}
	}
	return r.write(ctx, jsonRec(recKey{KeyType: keyMode, Subject: strp(subject)}, modeValue{Mode: m}))
}

// DeleteMode removes subject's mode and returns what it was.
func (r *Registry) DeleteMode(ctx context.Context, subject string) (Mode, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.RLock()
	prev, ok := r.st.modes[subject]
	if subject == "" && !ok {
		prev = ReadWrite
	}
	r.mu.RUnlock()
	if !ok && subject != "" {
		return "", &Error{Code: ErrSubjectLevelModeNotConfigured, Message: fmt.Sprintf("Subject '%s' does not have subject-level mode configured", subject)}
	}
	return prev, r.write(ctx, jsonRec(recKey{KeyType: keyMode, Subject: strp(subject)}, nil))
}

// CheckCompatibility tests a schema against one version of subject (ver
// > 0 or -1) under the subject's level, or against what registering it
// would check (ver 0). It returns the reasons it is not compatible.
func (r *Registry) CheckCompatibility(subject string, ver int, req RegisterRequest) ([]string, error) {
	s, _, err := r.parse(req)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	level := r.st.level(subject)
	var prev []schema.Versioned
	if ver == 0 {
		for _, v := range r.st.live(subject) {
			if p := r.st.ids[v.id].parsed; p != nil {
				prev = append(prev, schema.Versioned{Version: v.version, Schema: p})
			}
		}
		return schema.Check(level, s, prev), nil
	}
	if _, ok := r.st.subjects[subject]; !ok {
		return nil, errSubjectNotFound(subject)
	}
	v := r.st.version(subject, ver, false)
	if v == nil {
		return nil, errVersionNotFound(subject, ver)
	}
	p := r.st.ids[v.id].parsed
	if p == nil {
		return nil, &Error{Code: ErrStore, Message: fmt.Sprintf("stored schema %d does not parse", v.id)}
	}
	// One version: the level's direction without transitivity.
	l := schema.Level(strings.TrimSuffix(string(level), "_TRANSITIVE"))
	return schema.Check(l, s, []schema.Versioned{{Version: v.version, Schema: p}}), nil
}

// SchemaByID returns a schema by id, parsed (nil if it does not parse).
// It is the fast path validation on produce uses.
func (r *Registry) SchemaByID(id int) (schema.Schema, bool) {
	r.mu.RLock()
	s, ok := r.st.ids[id]
	r.mu.RUnlock()
	if !ok || s.parsed == nil {
		return nil, false
	}
	return s.parsed, true
}

// Latest returns the latest live version of subject.
func (r *Registry) Latest(subject string) (SchemaJSON, schema.Schema, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v := r.st.version(subject, -1, false)
	if v == nil {
		return SchemaJSON{}, nil, false
	}
	return r.st.subjectSchema(subject, v), r.st.ids[v.id].parsed, true
}

// Subjects lists subjects: with live versions, plus soft-deleted ones with
// deleted, or only soft-deleted ones with deletedOnly.
func (r *Registry) Subjects(prefix string, deleted, deletedOnly bool) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []string{}
	for s := range r.st.subjects {
		if !strings.HasPrefix(s, prefix) {
			continue
		}
		live := len(r.st.live(s)) > 0
		if (deletedOnly && !live) || (!deletedOnly && (live || deleted)) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
