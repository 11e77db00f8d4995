package cqrs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/heraldhq/herald/eventstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGModel is a read model in PostgreSQL tables. Each Apply is one
// transaction that runs Handle for every event and then stores the
// checkpoint in Schema.projection_checkpoints under Name, so the tables and
// the checkpoint commit together: after a crash or a failed Apply the
// projection resumes exactly where the committed tables end (exactly-once).
type PGModel struct {
	Pool *pgxpool.Pool
	// Name keys the checkpoint; two models with different names are
	// independent (a rebuild writes into a second one).
	Name string
	// Schema holds the checkpoint table; default "herald_projections".
	Schema string
	// Handle applies one event within the transaction.
	Handle func(ctx context.Context, tx pgx.Tx, ev eventstore.RecordedEvent) error
	// Truncate empties the model's own tables (for Reset).
	Truncate func(ctx context.Context, tx pgx.Tx) error

	setupMu sync.Mutex
	setup   bool
}

var pgIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (m *PGModel) table() string {
	s := m.Schema
	if s == "" {
		s = "herald_projections"
	}
	return `"` + s + `".projection_checkpoints`
}

func (m *PGModel) ensure(ctx context.Context) error {
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	if m.setup {
		return nil
	}
	if m.Schema != "" && !pgIdent.MatchString(m.Schema) {
		return fmt.Errorf("pg read model: schema %q: want a lower-case identifier", m.Schema)
	}
	if m.Name == "" || m.Handle == nil || m.Pool == nil {
		return errors.New("pg read model: Name, Handle and Pool are required")
	}
	s := m.Schema
	if s == "" {
		s = "herald_projections"
	}
	err := pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('herald-projections:' || $1))`, s); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+s+`"; CREATE TABLE IF NOT EXISTS `+m.table()+` (
			name text PRIMARY KEY, position bigint NOT NULL, updated timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return fmt.Errorf("pg read model %s: create checkpoint table: %w", m.Name, err)
	}
	m.setup = true
	return nil
}

// Checkpoint implements ReadModel.
func (m *PGModel) Checkpoint(ctx context.Context) (int64, error) {
	if err := m.ensure(ctx); err != nil {
		return 0, err
	}
	var pos int64
	err := m.Pool.QueryRow(ctx, `SELECT position FROM `+m.table()+` WHERE name = $1`, m.Name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return pos, err
}

// Apply implements ReadModel.
func (m *PGModel) Apply(ctx context.Context, events []eventstore.RecordedEvent, next int64) error {
	if err := m.ensure(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		// Lock the checkpoint row so two runners of one projection
		// serialise, and skip what the other already applied.
		var cur int64
		err := tx.QueryRow(ctx, `INSERT INTO `+m.table()+` (name, position) VALUES ($1, 0)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING position`, m.Name).Scan(&cur)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if ev.Position < cur {
				continue
			}
			if err := m.Handle(ctx, tx, ev); err != nil {
				return fmt.Errorf("event %d (%s of %s): %w", ev.Position, ev.Type, ev.Stream, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE `+m.table()+` SET position = greatest(position, $2), updated = now() WHERE name = $1`, m.Name, next)
		return err
	})
}

// Reset implements ReadModel.
func (m *PGModel) Reset(ctx context.Context) error {
	if err := m.ensure(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		if m.Truncate != nil {
			if err := m.Truncate(ctx, tx); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM `+m.table()+` WHERE name = $1`, m.Name)
		return err
	})
}
