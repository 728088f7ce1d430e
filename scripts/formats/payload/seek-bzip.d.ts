// seek-bzip ships no types; only the one function apply.ts calls is declared.
declare module 'seek-bzip' {
  interface OutputSink {
    writeByte(b: number): void;
    write(buf: Uint8Array, off: number, len: number): number;
    flush(): void;
  }
  const Bunzip: {
    decode(
      input: Uint8Array,
      output?: number | Uint8Array | OutputSink,
      multistream?: boolean,
    ): Buffer | undefined;
  };
  export default Bunzip;
}
