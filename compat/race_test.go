//go:build race

package compat

// raceEnabled is true when the suite runs under -race; herald is then
// built with -race too, so the server's own races fail the suite.
const raceEnabled = true
