// Image reference normalisation against the docker/distribution grammar as containerd and the kubelet apply it.
import { BerthError } from '../../src/common/errors';
import { formatName, formatReference, parseReference, registryEndpointHost } from '../../src/image/reference';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest'],
    ['library/busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest'],
    ['index.docker.io/busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined, 'docker.io/library/busybox:1.36'],
    ['user/img', 'docker.io', 'user/img', 'latest', undefined, 'docker.io/user/img:latest'],
    ['user/img:v1.2_x-y', 'docker.io', 'user/img', 'v1.2_x-y', undefined, 'docker.io/user/img:v1.2_x-y'],
    ['host:5000/a/b:tag', 'host:5000', 'a/b', 'tag', undefined, 'host:5000/a/b:tag'],
    ['127.0.0.1:5000/test/img', '127.0.0.1:5000', 'test/img', 'latest', undefined, '127.0.0.1:5000/test/img:latest'],
    ['localhost/x', 'localhost', 'x', 'latest', undefined, 'localhost/x:latest'],
    ['localhost:5000/x', 'localhost:5000', 'x', 'latest', undefined, 'localhost:5000/x:latest'],
    ['quay.io/a/b/c', 'quay.io', 'a/b/c', 'latest', undefined, 'quay.io/a/b/c:latest'],
    ['[::1]:5000/x:1', '[::1]:5000', 'x', '1', undefined, '[::1]:5000/x:1'],
    ['a__b/c.d-e', 'docker.io', 'a__b/c.d-e', 'latest', undefined, 'docker.io/a__b/c.d-e:latest'],
    [`busybox@${D}`, 'docker.io', 'library/busybox', undefined, D, `docker.io/library/busybox@${D}`],
    [`h.io/x:1@${D}`, 'h.io', 'x', '1', D, `h.io/x:1@${D}`],
    ['localhost:5000', 'docker.io', 'library/localhost', '5000', undefined, 'docker.io/library/localhost:5000'],
  ])('%s', (text, registry, repository, tag, digest, canonical) => {
    const ref = parseReference(text);
    expect(ref).toEqual({ registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) });
    expect(formatReference(ref)).toBe(canonical);
    expect(formatName(ref)).toBe(`${registry}/${repository}`);
    // The canonical form parses to the same reference.
    expect(parseReference(canonical)).toEqual(ref);
  });

  it.each([
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['docker.io/User/img', /lowercase/],
    ['busybox@sha256:abc', /64 lowercase hex/],
    [`busybox@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    [`busybox@sha512:${'a'.repeat(128)}`, /unsupported digest algorithm "sha512"/],
    ['busybox:', /tag/],
    ['busybox:-x', /tag/],
    [`busybox:${'t'.repeat(129)}`, /tag/],
    ['a//b', /empty path component/],
    ['host:5000/', /no repository/],
    ['-bad.io/x', /registry/],
    ['a/b_-c', /path component/],
    ['x y', /path component/],
    [`h.io/${'a'.repeat(260)}`, /longer than 255/],
    ['x'.repeat(2000), /longer than 1024/],
    ['a'.repeat(64), /image id/],
  ])('refuses %j', (text, why) => {
    let err: unknown;
    try {
      parseReference(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('INVALID_ARGUMENT');
    expect((err as BerthError).message).toMatch(/^invalid image reference "/);
    expect((err as BerthError).message).toMatch(why);
  });

  it('maps Docker Hub to its API host', () => {
    expect(registryEndpointHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryEndpointHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });
});
