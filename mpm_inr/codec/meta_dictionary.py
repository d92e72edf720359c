"""The preset dictionaries the codec's metadata is deflated against (format versions 3 to 11).

A file's metadata is a few hundred bytes of compact JSON whose keys and structure repeat from file to file (the
model config, the window, the blobs' dtypes and shapes); deflated on its own it costs ~0.6 KB, a quarter of a
100-frame Jp file. Deflated against a dictionary (compact JSON of four typical files: a siren_t weights file, a
bilinear file with its basis network, a per-object Chebyshev file and a one-component one, with their numbers
zeroed) it costs ~0.1-0.2 KB. Never edit one: every file of a version decodes only with that version's exact
bytes; a new dictionary is a new format version. Version 4's is version 3's four files in version 4's layout (no
provenance, no encoder estimates, a table of blob sizes instead of offsets).
"""

META_DICTIONARY = (
    b'{"blobs":{"constant":[0,0],"constant_values":[0,0],"weights/bias":[0,0],"weights/bias/scale":[0,0],"weights/'
    b'trunk.layers.0.linear.bias":[0,0],"weights/trunk.layers.0.linear.weight":[0,0],"weights/trunk.layers.0.linea'
    b'r.weight/scale":[0,0],"weights/trunk.layers.1.linear.bias":[0,0],"weights/trunk.layers.1.linear.weight":[0,0'
    b'],"weights/trunk.layers.1.linear.weight/scale":[0,0],"weights/trunk.layers.2.linear.bias":[0,0],"weights/tru'
    b'nk.layers.2.linear.weight":[0,0],"weights/trunk.layers.2.linear.weight/scale":[0,0],"weights/weight":[0,0],"'
    b'weights/weight/scale":[0,0]},"constant":{"dtype":"|u1","shape":[1125]},"encoding":{"ceiling_r2":0.0,"constan'
    b't_values":{"dtype":"<f4","shape":[0,4]},"goal_r2":0.995,"r2_estimate":0.0,"weight_bits":4,"weights":{"bias":'
    b'{"dtype":"|i1","scale":{"dtype":"<f2","shape":[9000]},"shape":[9000,4],"zigzag":true},"trunk.layers.0.linear'
    b'.bias":{"dtype":"<f2","shape":[256]},"trunk.layers.0.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","s'
    b'hape":[256]},"shape":[256,1],"zigzag":true},"trunk.layers.1.linear.bias":{"dtype":"<f2","shape":[256]},"trun'
    b'k.layers.1.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[256]},"shape":[256,256],"zigzag":tr'
    b'ue},"trunk.layers.2.linear.bias":{"dtype":"<f2","shape":[256]},"trunk.layers.2.linear.weight":{"dtype":"|i1"'
    b',"scale":{"dtype":"<f2","shape":[256]},"shape":[256,256],"zigzag":true},"weight":{"dtype":"|i1","scale":{"dt'
    b'ype":"<f2","shape":[9000]},"shape":[9000,256,4],"zigzag":true}}},"kind":"weights","model":{"hidden_dim":256,'
    b'"learn_omega":false,"n_layers":3,"name":"siren_t","omega":30.0},"source":{"dataset":"","run_dir":""},"window'
    b'":{"field":"F","held_out":[],"mean":[0.0,0.0,0.0,0.0],"n_components":4,"n_frames":100,"n_particles":9000,"st'
    b'art":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"blobs":{"basis/basis.head.bias":[0,0],"basis/basis.head.'
    b'weight":[0,0],"basis/basis.head.weight/scale":[0,0],"basis/basis.trunk.layers.0.linear.bias":[0,0],"basis/ba'
    b'sis.trunk.layers.0.linear.weight":[0,0],"basis/basis.trunk.layers.0.linear.weight/scale":[0,0],"basis/basis.'
    b'trunk.layers.1.linear.bias":[0,0],"basis/basis.trunk.layers.1.linear.weight":[0,0],"basis/basis.trunk.layers'
    b'.1.linear.weight/scale":[0,0],"basis/basis.trunk.layers.2.linear.bias":[0,0],"basis/basis.trunk.layers.2.lin'
    b'ear.weight":[0,0],"basis/basis.trunk.layers.2.linear.weight/scale":[0,0],"codes":[0,0],"constant":[0,0],"row'
    b'_scales":[0,0],"rows":[0,0]},"constant":{"dtype":"|u1","shape":[1125]},"encoding":{"basis":{"basis.head.bias'
    b'":{"dtype":"<f2","shape":[64]},"basis.head.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[64]},"shap'
    b'e":[64,64],"zigzag":true},"basis.trunk.layers.0.linear.bias":{"dtype":"<f2","shape":[64]},"basis.trunk.layer'
    b's.0.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[64]},"shape":[64,1],"zigzag":true},"basis.'
    b'trunk.layers.1.linear.bias":{"dtype":"<f2","shape":[64]},"basis.trunk.layers.1.linear.weight":{"dtype":"|i1"'
    b',"scale":{"dtype":"<f2","shape":[64]},"shape":[64,64],"zigzag":true},"basis.trunk.layers.2.linear.bias":{"dt'
    b'ype":"<f2","shape":[64]},"basis.trunk.layers.2.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":'
    b'[64]},"shape":[64,64],"zigzag":true}},"basis_kind":"network","ceiling_r2":0.0,"codes":{"dtype":"<i2","shape"'
    b':[144000],"zigzag":true},"goal_r2":0.995,"r2_estimate":0.0,"ranks":[16],"row_scales":{"dtype":"<f4","shape":'
    b'[16]},"rows":{"dtype":"|i1","shape":[256],"zigzag":true},"step":0.0,"weight_bits":6},"kind":"bilinear","mode'
    b'l":{"basis_groups":"none","codes":"solved","decoder":"bilinear","decoder_hidden":64,"group_embedding_dim":4,'
    b'"hidden_dim":64,"latent_dim":16,"latent_init_std":0.1,"latent_lr_mult":30.0,"learn_omega":false,"n_layers":3'
    b',"name":"lagrangian","omega":10.0,"shared_codes":"none","time_scale":1},"source":{"dataset":"","run_dir":""}'
    b',"window":{"field":"S","held_out":[],"mean":[0.0,0.0,0.0,0.0],"n_components":4,"n_frames":100,"n_particles":'
    b'9000,"start":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"blobs":{"codes":[0,0],"constant":[0,0],"object_i'
    b'd":[0,0],"row_scales":[0,0],"rows":[0,0],"series/coefs":[0,0],"series/coefs/scale":[0,0]},"constant":{"dtype'
    b'":"|u1","shape":[1125]},"encoding":{"basis_kind":"chebyshev","ceiling_r2":0.0,"codes":{"dtype":"<i2","shape"'
    b':[161000],"zigzag":true},"directions":[false,false,false,false,false,false,false,false,false],"goal_r2":0.99'
    b'5,"r2_estimate":0.0,"ranks":[18,18,17,18,18,18,18,18,18],"row_scales":{"dtype":"<f4","shape":[0]},"rows":{"d'
    b'type":"|i1","shape":[0],"zigzag":true},"series":{"coefs":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[33]}'
    b',"shape":[33,644],"zigzag":true}},"series_ranks":[18,18,17,18,18,18,18,18,18],"step":0.0,"weight_bits":8},"k'
    b'ind":"bilinear","model":{"basis_groups":"object","codes":"solved","decoder":"bilinear","decoder_hidden":64,"'
    b'group_embedding_dim":4,"hidden_dim":64,"latent_dim":18,"latent_init_std":0.1,"latent_lr_mult":30.0,"learn_om'
    b'ega":false,"n_layers":3,"name":"lagrangian","omega":10.0,"shared_codes":"none","time_scale":1},"object_id":{'
    b'"dtype":"|i1","shape":[9000],"zigzag":true},"source":{"dataset":"","run_dir":""},"window":{"field":"C","held'
    b'_out":[2,6,10,14,18,22,26,30,34,38,42,46,50,54,58,62,66,70,74,78,82,86,90,94,98],"mean":[0.0,0.0,0.0,0.0],"n'
    b'_components":4,"n_frames":100,"n_particles":9000,"start":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"blob'
    b's":{"codes":[0,0],"constant":[0,0],"row_scales":[0,0],"rows":[0,0],"series/coefs":[0,0]},"constant":{"dtype"'
    b':"|u1","shape":[1125]},"encoding":{"basis_kind":"chebyshev","ceiling_r2":0.0,"codes":{"dtype":"|i1","shape":'
    b'[10624],"zigzag":true},"directions":[false,true],"goal_r2":0.995,"r2_estimate":0.0,"ranks":[2,1],"row_scales'
    b'":{"dtype":"<f4","shape":[1]},"rows":{"dtype":"|i1","shape":[1],"zigzag":true},"series":{"coefs":{"dtype":"<'
    b'f2","shape":[2,2]}},"series_ranks":[2],"step":0.0,"weight_bits":16},"kind":"bilinear","model":{"basis_groups'
    b'":"none","codes":"solved","decoder":"bilinear","decoder_hidden":64,"group_embedding_dim":4,"hidden_dim":64,"'
    b'latent_dim":4,"latent_init_std":0.1,"latent_lr_mult":30.0,"learn_omega":false,"n_layers":3,"name":"lagrangia'
    b'n","omega":10.0,"shared_codes":"none","time_scale":1},"source":{"dataset":"","run_dir":""},"window":{"field"'
    b':"Jp","held_out":[],"mean":[0.0],"n_components":1,"n_frames":100,"n_particles":9000,"start":4950,"std":[1.0]'
    b',"t_period":1.0}}'
)

META_DICTIONARY_V4 = (
    b'{"blobs":{"constant":0,"constant_values":0,"weights/bias":0,"weights/bias/scale":0,"weights/trunk.layers.0.lin'
    b'ear.bias":0,"weights/trunk.layers.0.linear.weight":0,"weights/trunk.layers.0.linear.weight/scale":0,"weights/t'
    b'runk.layers.1.linear.bias":0,"weights/trunk.layers.1.linear.weight":0,"weights/trunk.layers.1.linear.weight/sc'
    b'ale":0,"weights/trunk.layers.2.linear.bias":0,"weights/trunk.layers.2.linear.weight":0,"weights/trunk.layers.2'
    b'.linear.weight/scale":0,"weights/weight":0,"weights/weight/scale":0},"constant":{"dtype":"|u1","shape":[1125]}'
    b',"encoding":{"constant_values":{"dtype":"<f4","shape":[0,4]},"goal_r2":0.995,"weight_bits":4,"weights":{"bias"'
    b':{"dtype":"|i1","scale":{"dtype":"<f2","shape":[9000]},"shape":[9000,4],"zigzag":true},"trunk.layers.0.linear.'
    b'bias":{"dtype":"<f2","shape":[256]},"trunk.layers.0.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shap'
    b'e":[256]},"shape":[256,1],"zigzag":true},"trunk.layers.1.linear.bias":{"dtype":"<f2","shape":[256]},"trunk.lay'
    b'ers.1.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[256]},"shape":[256,256],"zigzag":true},"tr'
    b'unk.layers.2.linear.bias":{"dtype":"<f2","shape":[256]},"trunk.layers.2.linear.weight":{"dtype":"|i1","scale":'
    b'{"dtype":"<f2","shape":[256]},"shape":[256,256],"zigzag":true},"weight":{"dtype":"|i1","scale":{"dtype":"<f2",'
    b'"shape":[9000]},"shape":[9000,256,4],"zigzag":true}}},"kind":"weights","model":{"hidden_dim":256,"learn_omega"'
    b':false,"n_layers":3,"name":"siren_t","omega":30.0},"window":{"field":"F","held_out":[],"mean":[0.0,0.0,0.0,0.0'
    b'],"n_components":4,"n_frames":100,"n_particles":9000,"start":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"bl'
    b'obs":{"basis/basis.head.bias":0,"basis/basis.head.weight":0,"basis/basis.head.weight/scale":0,"basis/basis.tru'
    b'nk.layers.0.linear.bias":0,"basis/basis.trunk.layers.0.linear.weight":0,"basis/basis.trunk.layers.0.linear.wei'
    b'ght/scale":0,"basis/basis.trunk.layers.1.linear.bias":0,"basis/basis.trunk.layers.1.linear.weight":0,"basis/ba'
    b'sis.trunk.layers.1.linear.weight/scale":0,"basis/basis.trunk.layers.2.linear.bias":0,"basis/basis.trunk.layers'
    b'.2.linear.weight":0,"basis/basis.trunk.layers.2.linear.weight/scale":0,"codes":0,"constant":0,"row_scales":0,"'
    b'rows":0},"constant":{"dtype":"|u1","shape":[1125]},"encoding":{"basis":{"basis.head.bias":{"dtype":"<f2","shap'
    b'e":[64]},"basis.head.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[64]},"shape":[64,64],"zigzag":true'
    b'},"basis.trunk.layers.0.linear.bias":{"dtype":"<f2","shape":[64]},"basis.trunk.layers.0.linear.weight":{"dtype'
    b'":"|i1","scale":{"dtype":"<f2","shape":[64]},"shape":[64,1],"zigzag":true},"basis.trunk.layers.1.linear.bias":'
    b'{"dtype":"<f2","shape":[64]},"basis.trunk.layers.1.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape'
    b'":[64]},"shape":[64,64],"zigzag":true},"basis.trunk.layers.2.linear.bias":{"dtype":"<f2","shape":[64]},"basis.'
    b'trunk.layers.2.linear.weight":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[64]},"shape":[64,64],"zigzag":tru'
    b'e}},"basis_kind":"network","codes":{"dtype":"<i2","shape":[144000],"zigzag":true},"goal_r2":0.995,"ranks":[16]'
    b',"row_scales":{"dtype":"<f4","shape":[16]},"rows":{"dtype":"|i1","shape":[256],"zigzag":true},"step":0.0,"weig'
    b'ht_bits":6},"kind":"bilinear","model":{"basis_groups":"none","codes":"solved","decoder":"bilinear","decoder_hi'
    b'dden":64,"group_embedding_dim":4,"hidden_dim":64,"latent_dim":16,"latent_init_std":0.1,"latent_lr_mult":30.0,"'
    b'learn_omega":false,"n_layers":3,"name":"lagrangian","omega":10.0,"shared_codes":"none","time_scale":1},"window'
    b'":{"field":"S","held_out":[],"mean":[0.0,0.0,0.0,0.0],"n_components":4,"n_frames":100,"n_particles":9000,"star'
    b't":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"blobs":{"codes":0,"constant":0,"object_id":0,"row_scales":0,'
    b'"rows":0,"series/coefs":0,"series/coefs/scale":0},"constant":{"dtype":"|u1","shape":[1125]},"encoding":{"basis'
    b'_kind":"chebyshev","codes":{"dtype":"<i2","shape":[161000],"zigzag":true},"directions":[false,false,false,fals'
    b'e,false,false,false,false,false],"goal_r2":0.995,"ranks":[18,18,17,18,18,18,18,18,18],"row_scales":{"dtype":"<'
    b'f4","shape":[0]},"rows":{"dtype":"|i1","shape":[0],"zigzag":true},"series":{"coefs":{"dtype":"|i1","scale":{"d'
    b'type":"<f2","shape":[33]},"shape":[33,644],"zigzag":true}},"series_ranks":[18,18,17,18,18,18,18,18,18],"step":'
    b'0.0,"weight_bits":8},"kind":"bilinear","model":{"basis_groups":"object","codes":"solved","decoder":"bilinear",'
    b'"decoder_hidden":64,"group_embedding_dim":4,"hidden_dim":64,"latent_dim":18,"latent_init_std":0.1,"latent_lr_m'
    b'ult":30.0,"learn_omega":false,"n_layers":3,"name":"lagrangian","omega":10.0,"shared_codes":"none","time_scale"'
    b':1},"object_id":{"dtype":"|i1","shape":[9000],"zigzag":true},"window":{"field":"C","held_out":[2,6,10,14,18,22'
    b',26,30,34,38,42,46,50,54,58,62,66,70,74,78,82,86,90,94,98],"mean":[0.0,0.0,0.0,0.0],"n_components":4,"n_frames'
    b'":100,"n_particles":9000,"start":4950,"std":[1.0,1.0,1.0,1.0],"t_period":1.0}}{"blobs":{"codes":0,"constant":0'
    b',"row_scales":0,"rows":0,"series/coefs":0},"constant":{"dtype":"|u1","shape":[1125]},"encoding":{"basis_kind":'
    b'"chebyshev","codes":{"dtype":"|i1","shape":[10624],"zigzag":true},"directions":[false,true],"goal_r2":0.995,"r'
    b'anks":[2,1],"row_scales":{"dtype":"<f4","shape":[1]},"rows":{"dtype":"|i1","shape":[1],"zigzag":true},"series"'
    b':{"coefs":{"dtype":"<f2","shape":[2,2]}},"series_ranks":[2],"step":0.0,"weight_bits":16},"kind":"bilinear","mo'
    b'del":{"basis_groups":"none","codes":"solved","decoder":"bilinear","decoder_hidden":64,"group_embedding_dim":4,'
    b'"hidden_dim":64,"latent_dim":4,"latent_init_std":0.1,"latent_lr_mult":30.0,"learn_omega":false,"n_layers":3,"n'
    b'ame":"lagrangian","omega":10.0,"shared_codes":"none","time_scale":1},"window":{"field":"Jp","held_out":[],"mea'
    b'n":[0.0],"n_components":1,"n_frames":100,"n_particles":9000,"start":4950,"std":[1.0],"t_period":1.0}}'
)

#: version 6's: version 4's and a window whose frames are held out by their rule (format 6): the rule then costs 2-3
#: bytes instead of the ~16 of a key the dictionary lacks, and a 100-frame list ([2,6,...,98], in version 4's) no less
META_DICTIONARY_V6 = META_DICTIONARY_V4 + (
    b'"window":{"field":"Jp","holdout_every":4,"mean":[0.0],"n_components":1,"n_frames":100,"n_particles":9000,"s'
    b'tart":4950,"std":[1.0],"t_period":1.0}}'
)

#: version 7's: version 6's and the piecewise series' key (format 7: `series_stretches`, only in a file whose series
#: is cut into stretches), which would otherwise cost ~16 bytes
META_DICTIONARY_V7 = META_DICTIONARY_V6 + b'"series_ranks":[18,18,17,18,18,18,18,18,18],"series_stretches":8,"step":0.0,'

#: version 8's: version 7's and the key of a file that codes the components apart (encoding.components), which
#: would otherwise cost ~14 bytes
META_DICTIONARY_V8 = META_DICTIONARY_V7 + b'"components":"split","constant":{"dtype":"|u1","shape":[4500]},'

#: version 9's: version 8's and the key of a piecewise series stored curve by curve (encoding.series_order)
META_DICTIONARY_V9 = META_DICTIONARY_V8 + b'"series_order":"curve",'

#: version 10's: the key of a file whose curves are their values at the training frames (encoding.series_knots),
#: then version 9's: put first, it leaves every back-reference into version 9's as far back as it was, so a file
#: without knots packs to the same metadata bytes
META_DICTIONARY_V10 = b'"series_knots":"training",' + META_DICTIONARY_V9

#: version 11's: version 10's, then the metadata of a one-component series file as format 11 writes it (no arrays
#: of directions, no constant-particle mask, series_ranks only where they differ from the codes' ranks) and of a
#: file of the quantised SVD (svd_file, kind "svd", new in format 11), numbers zeroed: last, nearest the metadata
#: that refers back to them, each such file's keys cost a few short back-references (a 100-frame Jp file's
#: metadata, the rest of format 11 written: 40-56 -> 28-47 bytes, 22-34 at scale 1; the quantised SVD's 20-33 ->
#: 18-30)
META_DICTIONARY_V11 = META_DICTIONARY_V10 + (
    b'{"encoding":{"basis_kind":"chebyshev","codes":{"dtype":"|i1","shape":[18000],"zigzag":true},"ranks":[2],"ser'
    b'ies":{"coefs":{"dtype":"<f2","shape":[2,2]}},"step":0.0,"weight_bits":16},"kind":"bilinear","model":{"basis_g'
    b'roups":"none","codes":"solved","decoder":"bilinear","decoder_hidden":64,"group_embedding_dim":4,"hidden_dim":'
    b'64,"latent_dim":4,"latent_init_std":0.1,"latent_lr_mult":30.0,"learn_omega":false,"n_layers":3,"name":"lagra'
    b'ngian","omega":10.0,"shared_codes":"none","time_scale":1},"window":{"field":"Jp","held_out":[],"mean":[1.0],"'
    b'n_components":1,"n_frames":100,"n_particles":9000,"start":4950,"std":[1.0],"t_period":1.0}}'
    b'{"encoding":{"basis":{"dtype":"|i1","scale":{"dtype":"<f2","shape":[2]},"shape":[2,100],"zigzag":true},"centr'
    b'e":[1.0],"codes":{"dtype":"|i1","shape":[2,9000],"zigzag":true},"interpolation":"cubic","step":0.0,"transpos'
    b'ed":true},"kind":"svd","window":{"field":"Jp","held_out":[],"n_components":1,"n_frames":100,"n_particles":90'
    b'00,"start":4950,"t_period":1.0}}'
)

#: the dictionary of each format version that has one
# version 5 drops version 4's table of array sizes and keeps its dictionary: the table's entries go unused; versions
# 12 and 13 keep version 11's (12's one new value, "parts", costs ~5 bytes of a split file's metadata; a new dictionary
# would move every other file's metadata by a byte or two)
META_DICTIONARIES = {3: META_DICTIONARY, 4: META_DICTIONARY_V4, 5: META_DICTIONARY_V4, 6: META_DICTIONARY_V6,
                     7: META_DICTIONARY_V7, 8: META_DICTIONARY_V8,
                     9: META_DICTIONARY_V9, 10: META_DICTIONARY_V10, 11: META_DICTIONARY_V11,
                     12: META_DICTIONARY_V11, 13: META_DICTIONARY_V11}
