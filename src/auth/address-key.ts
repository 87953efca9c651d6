import { isIPv6 } from 'node:net'

/**
 * The key a source address is counted under: IPv4-mapped IPv6 addresses count as IPv4; IPv6
 * addresses count per /64, the block one subscriber normally holds, or changing address within
 * it would reset every count.
 */
export function addressKey(remoteAddress: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remoteAddress)
  if (mapped) return mapped[1]!
  if (!isIPv6(remoteAddress)) return remoteAddress
  const [head = '', tail] = remoteAddress.split('%')[0]!.split('::')
  // An embedded IPv4 tail (`::ffff:1.2.3.4` forms) stands for two groups.
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])))
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`
}
