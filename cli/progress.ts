/** A spinner on stderr while something waits; silent when stderr is not a terminal or --json is set. */
export async function withProgress<T>(
  stream: NodeJS.WritableStream,
  label: string,
  enabled: boolean,
  work: () => Promise<T>,
): Promise<T> {
  const tty = enabled && (stream as NodeJS.WriteStream).isTTY === true;
  if (!tty) return work();
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  const timer = setInterval(() => stream.write(`\r${frames[i++ % frames.length]} ${label}`), 80);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    stream.write(`\r${' '.repeat(label.length + 2)}\r`);
  }
}
