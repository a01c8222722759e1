#!/usr/bin/env bash
# Runs every fuzz target in the module for a fixed budget each:
#   scripts/fuzz.sh [SECONDS]      (default 60; CI calls it with a short budget)
# Targets are found by name (func FuzzXxx in *_test.go), so a new one is
# fuzzed without editing this script. A crash leaves its input under the
# package's testdata/fuzz/ and fails the run; commit it as a regression seed
# once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-60}"
failed=()
count=0
while IFS=: read -r file name; do
  pkg="./$(dirname "$file")"
  count=$((count + 1))
  echo "== $name ($pkg, ${budget}s)"
  # Go's fuzzer now and then ends a run with "context deadline exceeded" and
  # no failing input when the budget runs out under load: that run is
  # repeated once; a failing input (written under testdata/fuzz/) never is.
  for try in 1 2; do
    if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "${budget}s" "$pkg" 2>&1); then
      echo "$out" | tail -2
      break
    fi
    echo "$out" | tail -20
    if [ "$try" = 2 ] || echo "$out" | grep -q "Failing input written" ||
      ! echo "$out" | grep -q "context deadline exceeded"; then
      failed+=("$name")
      break
    fi
    echo "fuzz: $name: deadline without a failing input; once more"
  done
done < <(git ls-files '*_test.go' | grep -v '^perf/' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func /:/' | sort -u)
echo "fuzz: $count targets, ${budget}s each, ${#failed[@]} failed ${failed[*]:-}"
[ "$count" -ge 8 ] || { echo "fuzz: want at least 8 fuzz targets, found $count" >&2; exit 1; }
[ "${#failed[@]}" -eq 0 ]
