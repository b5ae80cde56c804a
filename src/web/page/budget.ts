/**
 * Whether the page hashes a file of `size` bytes whole, by the browser's native SHA-256 (UploadHasher.whole), rather
 * than streamed through hash-wasm: the bytes read and WebCrypto's copy of them, twice the file, take at most a quarter
 * of the device's memory as the browser tells it (`navigator.deviceMemory`, GiB, rounded; Chromium only (Debian's
 * said 16 here); 2 where it is not told). So 1 GiB on a machine that says 8 GiB or more, 256 MiB where the browser does not say. `inUse`: the
 * bytes of the files being hashed whole already (the page uploads three files at once): the budget is theirs together.
 */
export function fitsWhole(size: number, deviceGiB: number | undefined, inUse = 0): boolean {
  return (inUse + size) * 2 <= ((deviceGiB ?? 2) * 1024 ** 3) / 4;
}
