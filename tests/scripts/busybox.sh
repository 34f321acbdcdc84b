#!/bin/sh
# A busybox sh workout for pvmux guest user mode: pipes, redirections, subshells, loops,
# case, functions, command substitution, exit statuses and the common applets. It works in
# a directory it creates under ${TMPDIR:-/tmp} and removes again. Its output is
# deterministic (no times, no pids) so that a native run and a guest run can be compared
# byte for byte; it exits with the number of failed checks (0 when all pass).

fails=0
# check NAME EXPECTED ACTUAL: prints "ok NAME" or "FAIL NAME" and counts failures.
check() {
    if [ "$2" = "$3" ]; then
        echo "ok $1"
    else
        echo "FAIL $1: expected [$2] got [$3]"
        fails=$((fails + 1))
    fi
}

base=${TMPDIR:-/tmp}
work=$base/bbscript.$$
rm -rf "$work"
mkdir -p "$work" || exit 90
cd "$work" || exit 91
echo "== setup"
check cwd "$work" "$(pwd)"

echo "== redirections"
echo first > out.txt
echo second >> out.txt
printf 'third\n' >> out.txt
cat out.txt
check lines 3 "$(wc -l < out.txt)"
check bytes 19 "$(wc -c < out.txt)"
ls /nonexistent-dir > err.txt 2>&1
check redirect-status 1 "$?"
check stderr-captured 1 "$(grep -c nonexistent-dir err.txt)"
ls /nonexistent-dir 2>/dev/null
check devnull-status 1 "$?"
while read -r line; do
    echo "read: $line"
done < out.txt
{ echo grouped-1; echo grouped-2; } > group.txt
check group "grouped-1 grouped-2" "$(cat group.txt | tr '\n' ' ' | sed 's/ $//')"
cat <<HEREDOC > here.txt
here $((6 * 7))
  indented
HEREDOC
cat here.txt

echo "== pipes"
seq 1 20 | grep 1 | sort -r | head -n 3
check pipe-count 11 "$(seq 1 20 | grep 1 | wc -l)"
printf 'pear\napple\nfig\napple\nbanana\n' > fruit.txt
sort fruit.txt | uniq -c | sed 's/^ *//'
sort -u fruit.txt | tail -n 2
check longest banana "$(awk '{ print length($0), $0 }' fruit.txt | sort -n | tail -n 1 | cut -d' ' -f2)"
echo "a:b:c" | tr ':' '\n' | while read -r part; do printf '[%s]' "$part"; done
echo
check pipe-status 0 "$(false | true; echo $?)"
check pipe-status-last 1 "$(true | false; echo $?)"

echo "== subshells"
x=outer
(x=inner; echo "in subshell: $x"; cd / && pwd)
echo "after subshell: $x"
check subshell-cwd "$work" "$(pwd)"
check subshell-exit 4 "$( (exit 4); echo $?)"
nested=$(echo "a$(echo "b$(echo c)")")
check nested-subst abc "$nested"
check backticks 5 "`expr 2 + 3`"

echo "== loops"
for i in 1 2 3; do
    for j in a b; do
        printf '%s%s ' "$i" "$j"
    done
done
echo
n=0
while [ "$n" -lt 5 ]; do
    n=$((n + 1))
    [ "$n" -eq 2 ] && continue
    [ "$n" -eq 4 ] && break
    echo "while n=$n"
done
k=3
until [ "$k" -eq 0 ]; do
    printf 'until %s\n' "$k"
    k=$((k - 1))
done
total=0
for f in $(seq 1 100); do total=$((total + f)); done
check sum-1-100 5050 "$total"

echo "== case"
classify() {
    case "$1" in
        [0-9]*) echo "$1: number" ;;
        *.txt) echo "$1: text file" ;;
        a*|b*) echo "$1: starts with a or b" ;;
        "") echo "(empty)" ;;
        *) echo "$1: other" ;;
    esac
}
for w in 42 notes.txt apple banana zebra ""; do classify "$w"; done

echo "== functions"
fact() {
    if [ "$1" -le 1 ]; then
        echo 1
    else
        echo $(($1 * $(fact $(($1 - 1)))))
    fi
}
check fact-10 3628800 "$(fact 10)"
retcode() { return "$1"; }
retcode 3
check return-status 3 "$?"
counter=0
bump() { counter=$((counter + 1)); }
bump; bump; bump
check function-globals 3 "$counter"
args() { echo "$# args: $*"; shift; echo "after shift: $1"; }
args one "two words" three

echo "== exit statuses"
true
check true 0 "$?"
false
check false 1 "$?"
sh -c 'exit 7'
check sh-exit 7 "$?"
grep -q nothing-like-this fruit.txt
check grep-miss 1 "$?"
grep -q apple fruit.txt && echo "and-list ran"
false || echo "or-list ran"
! false
check negation 0 "$?"
if test -f fruit.txt && [ -d . ] && [ ! -e missing ]; then echo "tests pass"; fi
test 3 -gt 5
check test-gt 1 "$?"
[ "abc" = "abc" ] && [ -n "x" ] && [ -z "" ] && echo "string tests pass"
check expr-arith 17 "$(expr 5 \* 3 + 2)"
check expr-length 5 "$(expr length hello)"
expr 1 = 2 > /dev/null
check expr-false-status 1 "$?"

echo "== files"
mkdir -p d1/d2/d3
echo payload > d1/d2/d3/file
cp d1/d2/d3/file copy.txt
check cp "payload" "$(cat copy.txt)"
cp -r d1 d1copy
check cp-r payload "$(cat d1copy/d2/d3/file)"
mv copy.txt moved.txt
check mv-old 1 "$(test -e copy.txt; echo $?)"
check mv-new payload "$(cat moved.txt)"
mv d1copy d1moved
ls
ls d1moved/d2
ls -a d1 | sort
echo "line one
line two
line three" > multi.txt
head -n 1 multi.txt
tail -n 1 multi.txt
head -c 4 multi.txt; echo
sed -n '2p' multi.txt
sed 's/line/LINE/g; /two/d' multi.txt
sed -i 's/one/1/' multi.txt
cat multi.txt
grep -n 'line t' multi.txt
grep -v two multi.txt | wc -l
check grep-count 3 "$(grep -c line multi.txt)"
rm moved.txt
check rm 1 "$(test -e moved.txt; echo $?)"
rm -r d1moved
rmdir d1 2>/dev/null
check rmdir-nonempty 1 "$?"
rm -rf d1
ls

echo "== sleep"
sleep 0.1
check sleep-status 0 "$?"

echo "== cleanup"
cd "$base" || exit 92
rm -rf "$work"
check removed 1 "$(test -d "$work"; echo $?)"
echo "failed checks: $fails"
exit "$fails"
