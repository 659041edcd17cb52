#!/bin/sh
# Run by wcs when a room's mixed recording is done:
#   on_multiple_record_hook.sh ROOM MIXED_FILE SOURCE_FILE...
# This sample only logs its arguments; replace it to upload, transcode, notify.
# It runs in its own process group, killed (with its children) after
# hook_timeout seconds: SIGTERM, then SIGKILL 5 s later.
room=$1; mixed=$2; shift 2
logger -t wcs-record "room=$room mixed=$mixed sources=$*" 2>/dev/null || true
echo "room=$room mixed=$mixed sources=$*"
