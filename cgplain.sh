#!/bin/bash
DIR=$1; P=42062
W=$(mktemp -d /tmp/rl/cg.XXXX); [ -f $DIR/dump.rdb ] && cp $DIR/dump.rdb $W/
valgrind --tool=callgrind --callgrind-out-file=$W/cg.out redis-server --port $P --dir $W --save "" --appendonly no ${SO:+--loadmodule $SO} --logfile $W/l.log >/dev/null 2>&1 & VP=$!
for i in $(seq 1 600); do redis-cli -p $P ping 2>/dev/null | grep -q PONG && break; sleep 0.5; done
redis-cli -p $P shutdown nosave >/dev/null 2>&1; wait $VP
callgrind_annotate $W/cg.out 2>/dev/null | grep -E "^ *[0-9,]+ \(" | head -${TOP:-8}
rm -rf $W
