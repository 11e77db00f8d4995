// Package pgstore is the event store on PostgreSQL (pgx).
//
// # Schema
//
// All tables live in one schema (Config.Schema), created by versioned
// migrations recorded in SCHEMA.schema_migrations and applied under an
// advisory lock, so concurrent openers agree:
//
//	streams(stream PK, version, last_id, truncate_before, deleted, tombstoned,
//	        max_count, max_age_us, meta_truncate_before)
//	events(position PK, stream, version, id, type, data, metadata, created,
//	       UNIQUE (stream, version))
//	head(id = 1, next)   -- the next position of $all
//
// # Concurrency
//
// An append is one transaction: it locks its streams' rows in name order
// (upserting missing ones), checks the expected versions, then takes the
// head row's lock to number its events, inserts them and updates the
// streams. Holding the head row until commit makes positions gapless and
// visible in commit order, so a reader of $all that reads up to head never
// skips an event committed later with a smaller position. The unique
// constraint on (stream, version) backs the row locks: no two events can
// ever share a version. Live subscriptions wake on LISTEN/NOTIFY (sent in
// the appending transaction, delivered at commit) and poll as a fallback.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Store.
type Config struct {
	// DSN is a libpq connection string or URL; ignored when Pool is set.
	DSN string
	// Pool is an existing pool; the store does not close it.
	Pool *pgxpool.Pool
	// Schema holds the store's tables; default "herald_eventstore".
	Schema string
	// MaxEventBytes bounds an event's data plus metadata.
	MaxEventBytes int
	// PollInterval is how often live subscriptions look for new events
	// when no notification arrives; default 500ms.
	PollInterval time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Store is the PostgreSQL event store.
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	ownPool bool
	schema  string // quoted
	channel string
	logger  *slog.Logger
	m       *metrics

	mu     sync.Mutex
	wake   chan struct{} // closed and replaced on every notification
	closed bool

	stop   context.CancelFunc
	doneWG sync.WaitGroup
}

// Open connects, migrates the schema and starts the notification listener.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Schema == "" {
		cfg.Schema = "herald_eventstore"
	}
	if !identRE.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("pg event store: schema %q: want a lower-case identifier of at most 63 bytes", cfg.Schema)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = eventstore.DefaultMaxEventBytes
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	s := &Store{cfg: cfg, pool: cfg.Pool, schema: `"` + cfg.Schema + `"`, channel: cfg.Schema + "_events",
		logger: cfg.Logger, wake: make(chan struct{})}
	if s.pool == nil {
		if cfg.DSN == "" {
			return nil, errors.New("pg event store: neither DSN nor Pool is set")
		}
		pool, err := pgxpool.New(ctx, cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("pg event store: %w", err)
		}
		s.pool, s.ownPool = pool, true
	}
	if err := s.migrate(ctx); err != nil {
		s.closePool()
		return nil, fmt.Errorf("pg event store: migrate schema %s: %w", cfg.Schema, err)
	}
	s.m = newMetrics()
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.m); err != nil {
			s.closePool()
			return nil, fmt.Errorf("pg event store: register metrics: %w", err)
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.doneWG.Add(1)
	go s.listen(lctx)
	return s, nil
}

func (s *Store) closePool() {
	if s.ownPool {
		s.pool.Close()
	}
}

// migrations are applied in order; each runs once per schema. Never edit
// one that has shipped: add another.
var migrations = []string{
	// 1: the event store.
	`CREATE TABLE {s}.streams (
		stream text PRIMARY KEY,
		version bigint NOT NULL DEFAULT -1,
		last_id text NOT NULL DEFAULT '',
		truncate_before bigint NOT NULL DEFAULT 0,
		deleted boolean NOT NULL DEFAULT false,
		tombstoned boolean NOT NULL DEFAULT false,
		max_count bigint NOT NULL DEFAULT 0,
		max_age_us bigint NOT NULL DEFAULT 0,
		meta_truncate_before bigint NOT NULL DEFAULT 0
	);
	CREATE TABLE {s}.events (
		position bigint PRIMARY KEY,
		stream text NOT NULL,
		version bigint NOT NULL,
		id text NOT NULL,
		type text NOT NULL,
		data bytea NOT NULL,
		metadata bytea NOT NULL,
		created timestamptz NOT NULL,
		CONSTRAINT events_stream_version UNIQUE (stream, version)
	);
	CREATE INDEX events_type_position ON {s}.events (type, position);
	CREATE TABLE {s}.head (id int PRIMARY KEY CHECK (id = 1), next bigint NOT NULL);
	INSERT INTO {s}.head VALUES (1, 0);`,
}

func (s *Store) q(sql string) string {
	out := make([]byte, 0, len(sql)+32)
	for i := 0; i < len(sql); i++ {
		if i+2 < len(sql) && sql[i:i+3] == "{s}" {
			out = append(out, s.schema...)
			i += 2
			continue
		}
		out = append(out, sql[i])
	}
	return string(out)
}

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "herald-migrate:"+s.cfg.Schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q(`CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, s.q(`SELECT coalesce(max(version), 0) FROM {s}.schema_migrations`)).Scan(&have); err != nil {
			return err
		}
		if have > len(migrations) {
			return fmt.Errorf("schema is at migration %d, this build knows %d: refusing to use a newer schema", have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, s.q(migrations[v-1])); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.schema_migrations (version) VALUES ($1)`), v); err != nil {
				return err
			}
			s.logger.Info("event store migration applied", "schema", s.cfg.Schema, "version", v)
		}
		return nil
	})
}

// listen wakes live subscribers on every NOTIFY, reconnecting on failure.
func (s *Store) listen(ctx context.Context) {
	defer s.doneWG.Done()
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.logger.Warn("event store notification listener failed; subscribers poll until it reconnects", "err", err)
		s.broadcast()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is dedicated to LISTEN: never return it to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, `LISTEN "`+s.channel+`"`); err != nil {
		return err
	}
	s.broadcast() // events may have been missed while disconnected
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return err
		}
		s.broadcast()
	}
}

func (s *Store) broadcast() {
	s.mu.Lock()
	if s.closed { // Close closed wake for good
		s.mu.Unlock()
		return
	}
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *Store) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	return nil
}

// dbErr maps driver errors; pgx's types never leave the package.
func (s *Store) dbErr(err error) error {
	if err == nil {
		return nil
	}
	if s.usable() != nil {
		return eventstore.ErrClosed
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("postgres: %s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	return fmt.Errorf("postgres: %v", err)
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.AppendMulti(ctx, []eventstore.StreamAppend{{Stream: stream, Expected: expected, Events: events}})
	if err != nil {
		var ie *eventstore.InvalidError
		if errors.As(err, &ie) && len(ie.Field) > 11 && ie.Field[:11] == "appends[0]." {
			return eventstore.AppendResult{}, &eventstore.InvalidError{Field: ie.Field[11:], Reason: ie.Reason}
		}
		return eventstore.AppendResult{}, err
	}
	return res[0], nil
}

type streamRow struct {
	version        int64
	lastID         string
	truncateBefore int64
	deleted        bool
	tombstoned     bool
}

// lockStream upserts and locks a stream's row for the transaction.
func (s *Store) lockStream(ctx context.Context, tx pgx.Tx, name string) (streamRow, error) {
	var r streamRow
	err := tx.QueryRow(ctx, s.q(`INSERT INTO {s}.streams (stream) VALUES ($1)
		ON CONFLICT (stream) DO UPDATE SET stream = EXCLUDED.stream
		RETURNING version, last_id, truncate_before, deleted, tombstoned`), name).
		Scan(&r.version, &r.lastID, &r.truncateBefore, &r.deleted, &r.tombstoned)
	return r, err
}

// AppendMulti implements eventstore.Store.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := eventstore.ValidateAppends(appends, s.cfg.MaxEventBytes); err != nil {
		return nil, err
	}
	start := time.Now()
	order := make([]int, len(appends))
	for i := range order {
		order[i] = i
	}
	// Lock rows in name order so two multi-stream appends never deadlock.
	slices.SortFunc(order, func(a, b int) int {
		if appends[a].Stream < appends[b].Stream {
			return -1
		}
		return 1
	})
	results := make([]eventstore.AppendResult, len(appends))
	var appErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows := make([]streamRow, len(appends))
		retried := make([]bool, len(appends))
		nRetried := 0
		var conflict error
		for _, i := range order {
			a := appends[i]
			r, err := s.lockStream(ctx, tx, a.Stream)
			if err != nil {
				return err
			}
			if r.tombstoned {
				appErr = &eventstore.StreamDeletedError{Stream: a.Stream}
				return errRollback
			}
			rows[i] = r
			cerr := eventstore.CheckExpected(a.Stream, a.Expected, r.version, r.deleted)
			res, ok, err := s.alreadyAppended(ctx, tx, r, a, cerr == nil)
			if err != nil {
				return err
			}
			if ok {
				results[i], retried[i] = res, true
				nRetried++
				continue
			}
			if cerr != nil && conflict == nil {
				conflict = cerr
			}
		}
		if conflict == nil && nRetried > 0 && nRetried < len(appends) {
			for i, a := range appends {
				if retried[i] {
					conflict = &eventstore.WrongExpectedVersionError{Stream: a.Stream, Expected: a.Expected, Actual: curVersion(rows[i])}
					break
				}
			}
		}
		if conflict != nil {
			appErr = conflict
			return errRollback
		}
		if nRetried == len(appends) {
			return errRollback // nothing to write; the results stand
		}
		total := 0
		for _, a := range appends {
			total += len(a.Events)
		}
		var first int64
		if err := tx.QueryRow(ctx, s.q(`UPDATE {s}.head SET next = next + $1 WHERE id = 1 RETURNING next - $1`), total).Scan(&first); err != nil {
			return err
		}
		now := time.Now().Truncate(time.Microsecond)
		var (
			pos      = make([]int64, 0, total)
			streams  = make([]string, 0, total)
			vers     = make([]int64, 0, total)
			ids      = make([]string, 0, total)
			types    = make([]string, 0, total)
			datas    = make([][]byte, 0, total)
			metas    = make([][]byte, 0, total)
			b        pgx.Batch
			position = first
		)
		for i, a := range appends {
			v := rows[i].version
			for _, e := range a.Events {
				v++
				pos = append(pos, position)
				streams = append(streams, a.Stream)
				vers = append(vers, v)
				ids = append(ids, e.ID)
				types = append(types, e.Type)
				datas = append(datas, nonNil(e.Data))
				metas = append(metas, nonNil(e.Metadata))
				position++
			}
			results[i] = eventstore.AppendResult{Stream: a.Stream, Version: v, Position: position - 1}
			b.Queue(s.q(`UPDATE {s}.streams SET version = $2, last_id = $3, deleted = false WHERE stream = $1`),
				a.Stream, v, a.Events[len(a.Events)-1].ID)
		}
		b.Queue(s.q(`INSERT INTO {s}.events (position, stream, version, id, type, data, metadata, created)
			SELECT p, s, v, i, t, d, m, $8 FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[], $7::bytea[]) AS x(p, s, v, i, t, d, m)`),
			pos, streams, vers, ids, types, datas, metas, now)
		b.Queue(`SELECT pg_notify($1, $2)`, s.channel, fmt.Sprint(position))
		return tx.SendBatch(ctx, &b).Close()
	})
	if errors.Is(err, errRollback) {
		if appErr != nil {
			if errors.Is(appErr, eventstore.ErrWrongExpectedVersion) {
				s.m.conflicts.Inc()
			}
			return nil, appErr
		}
		return results, nil
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			// Cannot happen under the row locks; if it does, no event was
			// duplicated and the caller may retry.
			return nil, fmt.Errorf("append: concurrent version collision: %w", eventstore.ErrWrongExpectedVersion)
		}
		return nil, s.dbErr(err)
	}
	n := 0
	for _, a := range appends {
		n += len(a.Events)
	}
	s.m.appends.Inc()
	s.m.events.Add(float64(n))
	s.m.latency.Observe(time.Since(start).Seconds())
	return results, nil
}

var errRollback = errors.New("rollback")

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func curVersion(r streamRow) int64 {
	if r.deleted {
		return -1
	}
	return r.version
}

// alreadyAppended: see the embedded backend; the same rules.
func (s *Store) alreadyAppended(ctx context.Context, tx pgx.Tx, r streamRow, a eventstore.StreamAppend, checked bool) (eventstore.AppendResult, bool, error) {
	none := eventstore.AppendResult{}
	if checked && a.Expected != eventstore.Any {
		return none, false, nil
	}
	n := int64(len(a.Events))
	var first int64
	switch {
	case a.Expected >= 0:
		first = int64(a.Expected) + 1
	case a.Expected == eventstore.NoStream:
		if r.deleted {
			return none, false, nil
		}
		first = r.truncateBefore
	default:
		if r.lastID != a.Events[n-1].ID {
			return none, false, nil
		}
		first = r.version + 1 - n
	}
	if first < 0 || first+n-1 > r.version {
		return none, false, nil
	}
	rows, err := tx.Query(ctx, s.q(`SELECT id, position FROM {s}.events WHERE stream = $1 AND version >= $2 AND version < $3 ORDER BY version`),
		a.Stream, first, first+n)
	if err != nil {
		return none, false, err
	}
	defer rows.Close()
	j := 0
	var last int64
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &last); err != nil {
			return none, false, err
		}
		if j >= len(a.Events) || a.Events[j].ID != id {
			return none, false, nil
		}
		j++
	}
	if err := rows.Err(); err != nil {
		return none, false, err
	}
	if j != len(a.Events) {
		return none, false, nil
	}
	return eventstore.AppendResult{Stream: a.Stream, Version: first + n - 1, Position: last}, true, nil
}

const streamCols = `version, deleted, tombstoned, truncate_before, max_count, max_age_us, meta_truncate_before`

func scanInfo(name string, row pgx.Row) (eventstore.StreamInfo, error) {
	info := eventstore.StreamInfo{Stream: name, Version: -1}
	var ageUS int64
	err := row.Scan(&info.Version, &info.Deleted, &info.Tombstoned, &info.TruncateBefore,
		&info.Metadata.MaxCount, &ageUS, &info.Metadata.TruncateBefore)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.StreamInfo{Stream: name, Version: -1}, nil
	}
	info.Metadata.MaxAge = time.Duration(ageUS) * time.Microsecond
	return info, err
}

// StreamInfo implements eventstore.Store.
func (s *Store) StreamInfo(ctx context.Context, name string) (eventstore.StreamInfo, error) {
	if err := s.usable(); err != nil {
		return eventstore.StreamInfo{}, err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return eventstore.StreamInfo{}, err
	}
	info, err := scanInfo(name, s.pool.QueryRow(ctx, s.q(`SELECT `+streamCols+` FROM {s}.streams WHERE stream = $1`), name))
	return info, s.dbErr(err)
}

const eventCols = `position, stream, version, id, type, data, metadata, created`

func scanEvents(rows pgx.Rows, dst []eventstore.RecordedEvent) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	for rows.Next() {
		var e eventstore.RecordedEvent
		if err := rows.Scan(&e.Position, &e.Stream, &e.Version, &e.ID, &e.Type, &e.Data, &e.Metadata, &e.Time); err != nil {
			return dst, err
		}
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
		dst = append(dst, e)
	}
	return dst, rows.Err()
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, name string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := eventstore.CheckReadStream(name, opts); err != nil {
		return nil, err
	}
	info, err := s.StreamInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	switch {
	case info.Tombstoned:
		return nil, &eventstore.StreamDeletedError{Stream: name}
	case info.Version < 0 || info.Deleted:
		return nil, eventstore.NotFound(name)
	}
	lo, hi, ok := eventstore.StreamRange(info, opts)
	out := []eventstore.RecordedEvent{}
	if !ok {
		return out, nil
	}
	cutoff := eventstore.MaxAgeCutoff(info.Metadata, time.Now())
	dir := "ASC"
	if opts.Backwards {
		dir = "DESC"
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT `+eventCols+` FROM {s}.events
		WHERE stream = $1 AND version BETWEEN $2 AND $3 AND created >= $4 ORDER BY version `+dir), name, lo, hi, cutoff)
	if err != nil {
		return nil, s.dbErr(err)
	}
	out, err = scanEvents(rows, out)
	s.m.reads.Inc()
	return out, s.dbErr(err)
}

// ReadAll implements eventstore.Store. Stream prefix, type prefix and type
// list are filtered in SQL; a type regex (RE2, as in every backend) and
// ExcludeSystem in Go over SQL pages.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.AllPage, error) {
	if err := s.usable(); err != nil {
		return eventstore.AllPage{}, err
	}
	m, err := eventstore.CheckReadAll(opts)
	if err != nil {
		return eventstore.AllPage{}, err
	}
	want := opts.Max
	if want == 0 {
		want = eventstore.DefaultMax
	}
	head, err := s.Head(ctx)
	if err != nil {
		return eventstore.AllPage{}, err
	}
	f := opts.Filter
	cond := `($3 = '' OR starts_with(stream, $3)) AND ($4 = '' OR starts_with(type, $4)) AND (cardinality($5::text[]) = 0 OR type = ANY($5))`
	var page eventstore.AllPage
	types := f.Types
	if types == nil {
		types = []string{}
	}
	const scanRows = 5000 // rows examined per call when a regex filters in Go
	examined := 0
	if !opts.Backwards {
		from := opts.From
		for {
			limit := want - len(page.Events)
			if f.TypeRegex != "" || f.ExcludeSystem {
				limit = max(limit, 500)
			}
			rows, err := s.pool.Query(ctx, s.q(`SELECT `+eventCols+` FROM {s}.events
				WHERE position >= $1 AND position < $2 AND `+cond+` ORDER BY position LIMIT $6`),
				from, head, f.StreamPrefix, f.TypePrefix, types, limit)
			if err != nil {
				return page, s.dbErr(err)
			}
			got, err := scanEvents(rows, nil)
			if err != nil {
				return page, s.dbErr(err)
			}
			for _, e := range got {
				from = e.Position + 1
				examined++
				if m.Match(e.Stream, e.Type) {
					page.Events = append(page.Events, e)
					if len(page.Events) == want {
						break
					}
				}
			}
			if len(got) < limit {
				from = head
				page.IsEnd = true
				break
			}
			if len(page.Events) >= want || examined >= scanRows {
				break
			}
		}
		page.Next = from
		return page, nil
	}
	from := opts.From
	if from == eventstore.End || from >= head {
		from = head - 1
	}
	for {
		limit := want - len(page.Events)
		if f.TypeRegex != "" || f.ExcludeSystem {
			limit = max(limit, 500)
		}
		rows, err := s.pool.Query(ctx, s.q(`SELECT `+eventCols+` FROM {s}.events
			WHERE position <= $1 AND position < $2 AND `+cond+` ORDER BY position DESC LIMIT $6`),
			from, head, f.StreamPrefix, f.TypePrefix, types, limit)
		if err != nil {
			return page, s.dbErr(err)
		}
		got, err := scanEvents(rows, nil)
		if err != nil {
			return page, s.dbErr(err)
		}
		for _, e := range got {
			from = e.Position - 1
			examined++
			if m.Match(e.Stream, e.Type) {
				page.Events = append(page.Events, e)
				if len(page.Events) == want {
					break
				}
			}
		}
		if len(got) < limit {
			from = -1
			page.IsEnd = true
			break
		}
		if len(page.Events) >= want || examined >= scanRows {
			break
		}
	}
	page.Next = from
	return page, nil
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	var next int64
	err := s.pool.QueryRow(ctx, s.q(`SELECT next FROM {s}.head WHERE id = 1`)).Scan(&next)
	return next, s.dbErr(err)
}

// WaitAll implements eventstore.Store.
func (s *Store) WaitAll(ctx context.Context, pos int64) error {
	for {
		s.mu.Lock()
		wake, closed := s.wake, s.closed
		s.mu.Unlock()
		if closed {
			return eventstore.ErrClosed
		}
		head, err := s.Head(ctx)
		if err != nil {
			return err
		}
		if head > pos {
			return nil
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// SetMetadata implements eventstore.Store.
func (s *Store) SetMetadata(ctx context.Context, name string, md eventstore.StreamMetadata) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return err
	}
	if err := eventstore.ValidateMetadata(md); err != nil {
		return err
	}
	var appErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r, err := s.lockStream(ctx, tx, name)
		if err != nil {
			return err
		}
		if r.tombstoned {
			appErr = &eventstore.StreamDeletedError{Stream: name}
			return errRollback
		}
		_, err = tx.Exec(ctx, s.q(`UPDATE {s}.streams SET max_count = $2, max_age_us = $3, meta_truncate_before = $4 WHERE stream = $1`),
			name, md.MaxCount, md.MaxAge.Microseconds(), md.TruncateBefore)
		return err
	})
	if appErr != nil {
		return appErr
	}
	return s.dbErr(err)
}

// Delete implements eventstore.Store.
func (s *Store) Delete(ctx context.Context, name string, expected eventstore.ExpectedVersion, hard bool) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return err
	}
	var appErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r, err := s.lockStream(ctx, tx, name)
		if err != nil {
			return err
		}
		if r.tombstoned {
			appErr = &eventstore.StreamDeletedError{Stream: name}
			return errRollback
		}
		if err := eventstore.CheckExpected(name, expected, r.version, r.deleted); err != nil {
			s.m.conflicts.Inc()
			appErr = err
			return errRollback
		}
		if hard {
			_, err = tx.Exec(ctx, s.q(`UPDATE {s}.streams SET tombstoned = true WHERE stream = $1`), name)
			return err
		}
		if r.version < 0 || r.deleted {
			appErr = eventstore.NotFound(name)
			return errRollback
		}
		_, err = tx.Exec(ctx, s.q(`UPDATE {s}.streams SET deleted = true, truncate_before = version + 1 WHERE stream = $1`), name)
		return err
	})
	if appErr != nil {
		return appErr
	}
	return s.dbErr(err)
}

// Streams lists live stream names after `after`, sorted, at most max.
func (s *Store) Streams(ctx context.Context, after string, max int) ([]string, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = eventstore.DefaultMax
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT stream FROM {s}.streams WHERE stream > $1 AND version >= 0 AND NOT deleted AND NOT tombstoned ORDER BY stream LIMIT $2`), after, max)
	if err != nil {
		return nil, s.dbErr(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return names, s.dbErr(err)
}

// Scavenge deletes the events no read can return any more: those of
// tombstoned streams, below a soft delete's or the metadata's truncate
// point, beyond max count, or older than max age. It runs in batches of
// short transactions, so appends and reads proceed meanwhile, and returns
// how many events it removed (Events in the report).
func (s *Store) Scavenge(ctx context.Context) (eventstore.ScavengeReport, error) {
	start := time.Now()
	n, err := s.scavenge(ctx)
	// PostgreSQL frees the rows' space for reuse at its next vacuum; the
	// bytes are not known here.
	return eventstore.ScavengeReport{Events: n, ReclaimedBytes: -1, Duration: time.Since(start)}, err
}

func (s *Store) scavenge(ctx context.Context) (int64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.q(`DELETE FROM {s}.events WHERE position IN (
			SELECT e.position FROM {s}.events e JOIN {s}.streams st ON st.stream = e.stream
			WHERE st.tombstoned
			   OR e.version < greatest(st.truncate_before, st.meta_truncate_before)
			   OR (st.max_count > 0 AND e.version <= st.version - st.max_count)
			   OR (st.max_age_us > 0 AND e.created < now() - st.max_age_us * interval '1 microsecond')
			LIMIT 10000)`))
		if err != nil {
			return total, s.dbErr(err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}

// Schema is the schema holding the store's tables.
func (s *Store) Schema() string { return s.cfg.Schema }

// Pool is the store's connection pool, for read models that commit with it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the listener and closes an owned pool.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.wake)
	s.mu.Unlock()
	s.stop()
	s.doneWG.Wait()
	if s.cfg.Registerer != nil {
		s.cfg.Registerer.Unregister(s.m)
	}
	s.closePool()
	return nil
}

var (
	_ eventstore.Store     = (*Store)(nil)
	_ eventstore.Scavenger = (*Store)(nil)
)
