#!/usr/bin/env bash
# test.sh runs every Herald test: formatting, go vet, the whole suite under the
# race detector, and short fuzz runs of every decoder of untrusted bytes.
# Set FUZZTIME (default 10s per target) to fuzz longer.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './bench/peers/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi

step "go vet"
go vet ./...

step "fuzz (${FUZZTIME:=10s} per target)"
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "$FUZZTIME" "$2"; }
fuzz FuzzValidate ./commitlog/batch
fuzz FuzzIter ./commitlog/batch
fuzz FuzzRecoverTail ./commitlog
fuzz FuzzDecodeCheckpoint ./commitlog
fuzz FuzzLoadIndex ./commitlog
fuzz FuzzDecodeRecord ./broker/groups
fuzz FuzzRequest ./kafka

step "go test -race"
go test -race -count=1 -timeout 20m ./...
