#!/usr/bin/env bash
# make fuzz: run every Go fuzz target in the module, one after another, for FUZZTIME each (default 30s).
# A failing input is written by `go test` to the package's testdata/fuzz/<Target>/ directory: commit it with the
# fix, and it runs as a regression seed in every plain `go test` from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-30s}"
GO="${GO:-go}"
failed=()
# Every `func FuzzX(f *testing.F)` in a _test.go file, as "dir FuzzX".
while read -r file target; do
	dir="./$(dirname "$file")"
	echo "=== $dir $target ($FUZZTIME)"
	if ! "$GO" test -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$dir"; then
		failed+=("$dir $target")
	fi
done < <(git ls-files '*_test.go' | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' | sed -E 's/^([^:]*):func (Fuzz[A-Za-z0-9_]*)\(.*/\1 \2/' | sort)
if ((${#failed[@]})); then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	echo "fuzz: the failing inputs are under each package's testdata/fuzz/; fix the code and commit them as regression seeds" >&2
	exit 1
fi
echo "fuzz: every target ran $FUZZTIME without a failure"
