"""Analytic FLOP and byte counts of the network's training step (PROTOCOL.md, "Network"), per
layer and in total, and the time each would take at an H200's peaks: the figures of
BENCHMARKS.md, "Kernels: analytic FLOP and byte counts". Usage: python3 tools/step_counts.py BATCH
"""
import sys
B=int(sys.argv[1]); T=640; F=176
layers=[]  # (name, kind, cin, cout, k, h_out, w_out, h_in, w_in)
def conv(name,cin,cout,k,hin,win,stride=1,pad=None):
    if pad is None: pad=(k-1)//2 if stride==1 else 0
    ho=(hin+2*pad-k)//stride+1; wo=(win+2*pad-k)//stride+1
    layers.append((name,'conv',cin,cout,k,ho,wo,hin,win)); return ho,wo
def convt(name,cin,cout,k,hin,win,hout,wout):
    layers.append((name,'convT',cin,cout,k,hout,wout,hin,win))
h,w=T,F; sizes=[]; ch=[1,16,32,64,128]
for i in range(4):
    conv(f"enc{i+1}.conv1",ch[i],ch[i+1],3,h,w); conv(f"enc{i+1}.conv2",ch[i+1],ch[i+1],3,h,w)
    conv(f"enc{i+1}.skip",ch[i],ch[i+1],1,h,w); sizes.append((h,w))
    h,w=conv(f"enc{i+1}.ds",ch[i+1],ch[i+1],2,h,w,2,0)
# x1 320x88 16, x2 160x44 32, x3 80x22 64, x4 40x11 128
conv("side.conv1",64,64,3,80,22); conv("side.conv2",32,32,3,160,44); conv("side.conv3",16,16,3,320,88)
dec=[(192,64,128,(40,11),(80,22)),(96,32,64,(80,22),(160,44)),(48,16,32,(160,44),(320,88)),(16,1,16,(320,88),(640,176))]
for i,(cin,cout,us,(hi,wi),(ho,wo)) in enumerate(dec):
    convt(f"dec{i+1}.us",us,us,2,hi,wi,ho,wo)
    convt(f"dec{i+1}.conv2d",cin,cin//2,3,ho,wo,ho,wo); convt(f"dec{i+1}.conv1d",cin//2,cout,3,ho,wo,ho,wo)
tot_f=0; tot_b=0
rows=[]
for (name,kind,cin,cout,k,ho,wo,hi,wi) in layers:
    if kind=='conv': macs=B*ho*wo*cout*cin*k*k
    else: macs=B*hi*wi*cout*cin*k*k   # transposed: every input pixel scatters a kernel
    inb=B*cin*hi*wi*4; outb=B*cout*ho*wo*4; wb=cin*cout*k*k*4
    fwd_bytes=inb+outb+wb; bwd_bytes=2*inb+2*outb+2*wb+outb   # read x, d_y (twice), write d_x, d_w
    rows.append((name,2*macs,4*macs,fwd_bytes,bwd_bytes))
conv_f=sum(r[1] for r in rows); conv_b=sum(r[2] for r in rows); conv_fb=sum(r[3] for r in rows); conv_bb=sum(r[4] for r in rows)
# BN+lrelu: every conv1/conv2 in encoder, conv2d/conv1d in dec blocks 1-3
# BatchNorm + leaky ReLU after every encoder conv1/conv2 and every decoder conv2d/conv1d except
# the last block's conv1d.
bn_elems=0
for (name,kind,cin,cout,k,ho,wo,hi,wi) in layers:
    if (name.startswith('enc') and (name.endswith('.conv1') or name.endswith('.conv2'))) or (name.startswith('dec') and name[3] in '123' and ('conv2d' in name or 'conv1d' in name)) or name=='dec4.conv2d':
        bn_elems+=B*cout*ho*wo
H=176; lstm_f=2*B*T*2*4*H*(F+H); lstm_b=2*lstm_f
lin_f=2*B*T*352*88; lin_b=2*lin_f
print(f"batch {B}")
print(f"conv+convT: forward {conv_f/1e9:.1f} GFLOP, backward {conv_b/1e9:.1f} GFLOP; bytes fwd {conv_fb/1e9:.2f} GB bwd {conv_bb/1e9:.2f} GB")
print(f"BN+lrelu elements {bn_elems/1e6:.1f} M: fwd bytes (x twice, y once) {12*bn_elems/1e9:.2f} GB, bwd (x,dy twice, dx rmw) {24*bn_elems/1e9:.2f} GB")
print(f"lstm fwd {lstm_f/1e9:.2f} GFLOP bwd {lstm_b/1e9:.2f}; linear fwd {lin_f/1e9:.3f} bwd {lin_b/1e9:.3f}")
total_flops=conv_f+conv_b+lstm_f+lstm_b+lin_f+lin_b+ 10*bn_elems*3
total_bytes=conv_fb+conv_bb+36*bn_elems + 4*B*T*F*40
print(f"step total ~{total_flops/1e9:.1f} GFLOP, ~{total_bytes/1e9:.2f} GB")
print(f"at 67 TFLOP/s fp32: {total_flops/67e12*1e3:.2f} ms; at 4.8 TB/s: {total_bytes/4.8e12*1e3:.2f} ms; TF32 dense 495 TFLOP/s: {total_flops/495e12*1e3:.3f} ms")
for r in rows: print(f"| {r[0]} | {r[1]/1e9:.3f} | {r[2]/1e9:.3f} | {r[3]/1e6:.1f} | {r[4]/1e6:.1f} |")
