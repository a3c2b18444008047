// What esbuild's `file` loader gives for an imported asset: its URL.
declare module '*.wasm' {
  const url: string;
  export default url;
}
