/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, for Wine versions
 * that lack it (Debian 12's Wine 8.0). Every Windows 10/11 ships the real
 * DLL; Rust's standard library (1.78 and later) imports ProcessPrng from it,
 * so without this file no Rust .exe even loads under such a Wine (status
 * c0000135, exit 53). scripts/wine-run builds it with mingw-w64 and copies
 * it into the scratch WINEPREFIX of a test run, only when that Wine has no
 * bcryptprimitives.dll of its own. It is never shipped.
 *
 * ProcessPrng fills the buffer from the system's cryptographic generator:
 * here RtlGenRandom (exported by advapi32 as SystemFunction036), which Wine
 * implements. Like the real function it always returns TRUE; a failure of
 * the generator aborts the process rather than hand out predictable bytes.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            ExitProcess(0xC0000001);
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
