#!/usr/bin/env bash
# tools/deb/man.sh ATTN_BINARY > attn.1 - the man page, made from the
# command's own --help texts (so it says what the installed binary does).
set -euo pipefail
bin=$1
version=$("$bin" --version | head -n1 | awk '{print $2}')
roff() { sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/" -e 's/-/\\-/g'; }
cat <<EOT
.TH ATTN 1 "" "attn $version" "User Commands"
.SH NAME
attn \\- transformer attention on the CPU, from the command line
.SH SYNOPSIS
.B attn
.I COMMAND
[\\fIOPTIONS\\fR]
.SH DESCRIPTION
.nf
EOT
"$bin" --help | roff
for cmd in $("$bin" --help | awk '/^Commands:/ {on=1; next} /^$/ {on=0} on && /^  [a-z]/ {print $1}'); do
  printf '.fi\n.SH "attn %s"\n.nf\n' "$cmd"
  "$bin" "$cmd" --help | roff
done
cat <<EOT
.fi
.SH SEE ALSO
The library's manual is its header, attn.h (package libattn-dev).
EOT
