# Touches a bytearray of MIB MiB, one store per 4 KiB page, PASSES times:
# the program of benches/damon-capture.sh. Usage: touch.py MIB PASSES
import sys
mib = int(sys.argv[1]); passes = int(sys.argv[2])
a = bytearray(mib << 20)
for r in range(passes):
    for i in range(0, len(a), 4096):
        a[i] = r & 0xff
