import { describe, expect, it } from 'vitest'
import { mayUseLibreChatMethod } from '../../src/lib/viewer-access.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

describe('mayUseLibreChatMethod', () => {
  it.each(['owner', 'admin', 'member'])('lets a %s use every method', (role) => {
    for (const method of METHODS) expect(mayUseLibreChatMethod(role, method)).toBe(true)
  })

  it('lets a viewer read only', () => {
    expect(METHODS.filter((method) => mayUseLibreChatMethod('viewer', method))).toEqual([
      'GET',
      'HEAD',
    ])
  })

  it.each([
    ['viewer', 'get'],
    ['viewer', ' GET'],
    ['viewer', 'GET '],
    ['viewer', undefined],
    ['viewer', ['GET']],
    ['Viewer', 'POST'],
    ['OWNER', 'POST'],
    ['guest', 'GET'],
    ['', 'GET'],
    [undefined, 'GET'],
    [null, 'GET'],
    ['constructor', 'GET'],
    ['__proto__', 'POST'],
  ])('refuses role %j with method %j', (role, method) => {
    expect(mayUseLibreChatMethod(role, method)).toBe(false)
  })
})
